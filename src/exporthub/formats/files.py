"""Whole-file operations: converting the canonical NDJSON copy to another
format, and assembling the download ZIP. Both write to a hidden temp name in
the destination's directory and rename it into place only when complete."""

from __future__ import annotations

import os
import posixpath
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._base import check_format, fsync_dir, fsync_file, temp_sibling
from .text import read_ndjson
from .writers import open_writer

ZIP_CHUNK = 1 << 20


def convert(
    source_ndjson: Path, fmt: str, dest: Path, extra_columns: Sequence[str] = ()
) -> int:
    """Stream the records of ``source_ndjson`` into a new ``fmt`` file at
    ``dest`` and return the record count.

    The file is written under a temp name beside ``dest`` and renamed onto it
    only on success, so a failed conversion (corrupt source line, full disk,
    cancellation) never leaves a partial file at ``dest``; a file already at
    ``dest`` is replaced only by a complete one. Raises :class:`UnknownFormat`
    before touching the disk.
    """
    check_format(fmt)
    dest = Path(dest)
    tmp = temp_sibling(dest)
    try:
        with open_writer(fmt, tmp, extra_columns) as writer:
            for record in read_ndjson(source_ndjson):
                writer.write(record)
        fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return writer.count


def _member_name(arcname: str) -> str:
    """The name zipfile will store for ``arcname``; refuses names that would
    unpack outside the extraction directory."""
    if not isinstance(arcname, str) or not arcname:
        raise ValueError(f"bad ZIP member name {arcname!r}")
    name = posixpath.normpath(arcname.replace("\\", "/"))
    if name.startswith("/") or name == "." or name.split("/")[0] == "..":
        raise ValueError(f"bad ZIP member name {arcname!r}")
    return name


def write_zip(members: Iterable[tuple[str, Path]], dest: Path) -> int:
    """Write one ZIP (deflated) holding each ``(arcname, path)`` member and
    return the size of ``dest`` in bytes.

    Members are streamed from disk in 1 MiB chunks (memory stays flat
    whatever their size; ZIP64 is used where a member needs it). The archive
    is built under a temp name beside ``dest`` and renamed into place only
    when complete: on any error (a missing member, a full disk) the temp file
    is removed, the error re-raised, and nothing new appears at ``dest``.
    Duplicate member names (after normalisation, so ``a.csv`` and ``./a.csv``
    clash), absolute names and names with ``..`` raise ``ValueError`` before
    anything is written.
    """
    items: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for arcname, path in members:
        name = _member_name(arcname)
        if name in seen:
            raise ValueError(f"duplicate ZIP member name {arcname!r}")
        seen.add(name)
        items.append((name, Path(path)))

    dest = Path(dest)
    tmp = temp_sibling(dest)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, path in items:
                with open(path, "rb") as src:
                    # A member dated before 1980 (mtime 0, as some copy
                    # tools leave it) is stored as 1980-01-01, not refused.
                    info = zipfile.ZipInfo.from_file(
                        path, name, strict_timestamps=False
                    )
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(info, "w") as out:
                        shutil.copyfileobj(src, out, ZIP_CHUNK)
        fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
    return dest.stat().st_size

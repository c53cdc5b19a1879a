"""Shared pieces of the format writers: column names, errors, the writer
protocol, and small helpers for temp names and text clean-up."""

from __future__ import annotations

import codecs
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

FORMATS: tuple[str, ...] = ("xlsx", "csv", "json", "ndjson")

BASE_COLUMNS: tuple[str, ...] = (
    "id",
    "parent_id",
    "depth",
    "author",
    "published_at",
    "text",
    "permalink",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("likes", "replies")

HEADERS: dict[str, str] = {
    "id": "ID",
    "parent_id": "Parent ID",
    "depth": "Depth",
    "author": "Author",
    "published_at": "Published (UTC)",
    "text": "Text",
    "permalink": "Permalink",
    "likes": "Likes",
    "replies": "Replies",
}


class UnknownFormat(ValueError):
    """An export format name that is not one of :data:`FORMATS`."""

    def __init__(self, fmt: object) -> None:
        super().__init__(
            f"unknown export format {fmt!r}; supported formats: {', '.join(FORMATS)}"
        )
        self.fmt = fmt


class Writer(Protocol):
    """A streaming writer of one export file.

    Writers are context managers: leaving the block normally calls
    :meth:`close`, leaving it with an exception calls :meth:`abort`.
    """

    count: int
    """Records written so far."""

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record (a :meth:`Comment.to_record` dict)."""

    def close(self) -> None:
        """Finish the file. Idempotent; a no-op after :meth:`abort`."""

    def abort(self) -> None:
        """Close and delete the (partial) file. Idempotent."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is supported, else raise :class:`UnknownFormat`."""
    if fmt not in FORMATS:
        raise UnknownFormat(fmt)
    return fmt


def columns(extra_columns: Sequence[str] = ()) -> tuple[str, ...]:
    """:data:`BASE_COLUMNS` plus ``extra_columns`` in :data:`OPTIONAL_COLUMNS`
    order. Unknown names raise ``ValueError``; duplicates count once."""
    if isinstance(extra_columns, str):  # a bare "likes" would iterate letters
        extra_columns = (extra_columns,)
    wanted = set(extra_columns)
    unknown = wanted.difference(OPTIONAL_COLUMNS)
    if unknown:
        raise ValueError(
            f"unknown column(s) {', '.join(sorted(map(repr, unknown)))}; "
            f"optional columns are {', '.join(OPTIONAL_COLUMNS)}"
        )
    return BASE_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in wanted)


class BaseWriter:
    """Open/closed/aborted bookkeeping shared by every writer.

    Subclasses implement ``_write`` (one record), ``_finish`` (complete the
    file) and ``_release`` (drop open handles without completing it).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._state = "open"

    def write(self, record: Mapping[str, Any]) -> None:
        if self._state != "open":
            raise ValueError(f"write to a {self._state} writer ({self.path.name})")
        self._write(record)
        self.count += 1

    def close(self) -> None:
        if self._state != "open":
            return
        self._state = "closed"
        try:
            self._finish()
        except BaseException:
            # A file that could not be finished is a partial file: drop it.
            self.abort()
            raise

    def abort(self) -> None:
        if self._state == "aborted":
            return
        self._state = "aborted"
        try:
            self._release()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # Implemented by subclasses.
    def _write(self, record: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


# -- text clean-up ----------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub(text: str) -> str:
    """Replace lone surrogates (from JSON like ``"\\ud83d"``, e.g. an emoji
    cut in half by a platform) with U+FFFD; they cannot be encoded as UTF-8.
    """
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _replace_with_fffd(exc: UnicodeError) -> tuple[str | bytes, int]:
    if isinstance(exc, UnicodeEncodeError) and exc.encoding.replace("-", "_") in (
        "utf_8",
        "utf_8_sig",
    ):
        # The UTF-8 encoder takes only ASCII text or raw bytes as replacement.
        return "\ufffd".encode() * (exc.end - exc.start), exc.end
    raise exc


ENCODE_ERRORS = "exporthub.formats.fffd"
"""Codec error handler name: unencodable characters become U+FFFD."""
codecs.register_error(ENCODE_ERRORS, _replace_with_fffd)


# -- files --------------------------------------------------------------------


def temp_sibling(dest: Path, suffix: str = ".part") -> Path:
    """An unguessable hidden name in ``dest``'s directory (same filesystem, so
    a rename onto ``dest`` is atomic)."""
    dest = Path(dest)
    return dest.with_name(f".{short_name(dest)}.{secrets.token_hex(8)}{suffix}")


def short_name(path: Path) -> str:
    """``path``'s name cut to 100 UTF-8 bytes, for building temp names that
    stay under the 255-byte name limit."""
    return Path(path).name.encode()[:100].decode(errors="ignore")


def fsync_file(path: Path) -> None:
    """Flush a finished file to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Best effort: make a rename in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

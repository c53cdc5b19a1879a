"""Choosing a writer by format name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._base import Writer, check_format, columns
from .text import CsvWriter, JsonWriter, NdjsonWriter
from .xlsx import XlsxWriter

_WRITERS = {
    "xlsx": XlsxWriter,
    "csv": CsvWriter,
    "json": JsonWriter,
    "ndjson": NdjsonWriter,
}


def open_writer(fmt: str, path: Path, extra_columns: Sequence[str] = ()) -> Writer:
    """A streaming writer of ``fmt`` writing to ``path`` (created or
    truncated; the caller picks an unguessable name).

    XLSX and CSV get the columns :data:`BASE_COLUMNS` + ``extra_columns``
    (put in :data:`OPTIONAL_COLUMNS` order; other names raise ``ValueError``).
    Raises :class:`UnknownFormat` for a format not in :data:`FORMATS`.
    Use it as a context manager: the file is closed on success and deleted
    on an exception.
    """
    cls = _WRITERS[check_format(fmt)]
    return cls(Path(path), columns(extra_columns))

"""Export file formats: streaming writers, conversion and ZIP assembly.

Everything here works in constant memory, one record at a time:

* :func:`open_writer` gives a :class:`Writer` for ``xlsx``, ``csv``,
  ``json`` or ``ndjson`` that writes straight to the path given.
* :func:`read_ndjson` streams the records of the canonical NDJSON copy back.
* :func:`convert` turns that copy into another format.
* :func:`write_zip` bundles finished files into one download.

Columns (XLSX and CSV) are :data:`BASE_COLUMNS` plus the optional columns a
platform fills; JSON and NDJSON write each record exactly as given. What
each format does with awkward text (formula-like cells, over-long text, line
breaks) is described on its writer class: :class:`~.xlsx.XlsxWriter`,
:class:`~.text.CsvWriter`, :class:`~.text.JsonWriter`,
:class:`~.text.NdjsonWriter`.
"""

from __future__ import annotations

from ._base import (
    BASE_COLUMNS,
    FORMATS,
    HEADERS,
    OPTIONAL_COLUMNS,
    UnknownFormat,
    Writer,
    columns,
)
from .files import convert, write_zip
from .text import read_ndjson
from .writers import open_writer

__all__ = [
    "BASE_COLUMNS",
    "FORMATS",
    "HEADERS",
    "OPTIONAL_COLUMNS",
    "UnknownFormat",
    "Writer",
    "columns",
    "convert",
    "open_writer",
    "read_ndjson",
    "write_zip",
]

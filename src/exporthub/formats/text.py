"""CSV, JSON and NDJSON writers, and the NDJSON reader."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from ._base import ENCODE_ERRORS, BaseWriter, scrub

_BUFFER = 1 << 20

CSV_GUARDED_COLUMNS: tuple[str, ...] = ("author", "text")
"""CSV columns whose values are written with a leading ``'`` when they start
with one of :data:`CSV_FORMULA_TRIGGERS`."""
CSV_FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


class CsvWriter(BaseWriter):
    """CSV for spreadsheets: UTF-8 with a BOM (so Excel detects the encoding),
    a header row of the column keys, ``\\r\\n`` line ends, fields with line
    breaks, commas or quotes quoted (text keeps its own ``\\n`` breaks).

    ``None`` is written as an empty field.

    Formula injection: spreadsheet programs run a CSV cell that starts with
    ``=``, ``+``, ``-`` or ``@`` (and some also tab or CR) as a formula. The
    ``author`` and ``text`` columns hold what strangers typed, so a value
    there starting with one of those characters gets a leading ``'``
    (``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``), the usual defence:
    spreadsheet programs then take the cell as text. Code reading the CSV as
    data sees the quote as part of the value; JSON/NDJSON keep the exact
    text, and XLSX needs no prefix (its cells are typed strings). Other
    columns are platform-made ids, dates, numbers and URLs and are written
    unchanged (ids can start with ``-``; changing them would break joins).
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        super().__init__(path)
        self.columns = tuple(columns)
        self._guarded = tuple(
            i for i, key in enumerate(self.columns) if key in CSV_GUARDED_COLUMNS
        )
        self._fh: IO[str] = open(
            self.path,
            "w",
            encoding="utf-8-sig",
            errors=ENCODE_ERRORS,
            newline="",
            buffering=_BUFFER,
        )
        try:
            self._csv = csv.writer(self._fh, lineterminator="\r\n")
            self._csv.writerow(self.columns)
        except BaseException:
            self._fh.close()
            self.path.unlink(missing_ok=True)
            raise

    def _write(self, record: Mapping[str, Any]) -> None:
        get = record.get
        row = [get(key) for key in self.columns]
        for i in self._guarded:
            value = row[i]
            if (
                value
                and isinstance(value, str)
                and value.startswith(CSV_FORMULA_TRIGGERS)
            ):
                row[i] = "'" + value
        self._csv.writerow(row)

    def _finish(self) -> None:
        self._fh.close()

    def _release(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass


def _dumps(record: Mapping[str, Any], option: int = 0) -> bytes:
    if type(record) is not dict:  # orjson serialises only real dicts
        record = dict(record)
    try:
        return orjson.dumps(record, option=option)
    except orjson.JSONEncodeError:
        # The usual culprit is a lone surrogate; anything else fails again.
        cleaned = {k: scrub(v) if isinstance(v, str) else v for k, v in record.items()}
        return orjson.dumps(cleaned, option=option)


class JsonWriter(BaseWriter):
    """A JSON array, written incrementally: ``[`` and a newline, the records
    separated by ``,\\n``, a newline and ``]``. Zero records give ``[]``.
    Each record is written as given (every key, original order); lone
    surrogates become U+FFFD."""

    def __init__(self, path: Path, columns: Sequence[str] = ()) -> None:
        super().__init__(path)
        self._fh: IO[bytes] = open(self.path, "wb", buffering=_BUFFER)
        self._fh.write(b"[")

    def _write(self, record: Mapping[str, Any]) -> None:
        data = _dumps(record)  # before the separator: a failure writes nothing
        self._fh.write(b",\n" if self.count else b"\n")
        self._fh.write(data)

    def _finish(self) -> None:
        try:
            self._fh.write(b"\n]\n" if self.count else b"]\n")
        finally:
            self._fh.close()

    def _release(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass


class NdjsonWriter(BaseWriter):
    """NDJSON: one JSON object per line, ``\\n`` line ends, UTF-8. Records
    are written as given (every key, original order)."""

    def __init__(self, path: Path, columns: Sequence[str] = ()) -> None:
        super().__init__(path)
        self._fh: IO[bytes] = open(self.path, "wb", buffering=_BUFFER)

    def _write(self, record: Mapping[str, Any]) -> None:
        self._fh.write(_dumps(record, orjson.OPT_APPEND_NEWLINE))

    def _finish(self) -> None:
        self._fh.close()

    def _release(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass


def read_ndjson(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the records of an NDJSON file, one line at a time.

    Blank lines are skipped. A line that is not a JSON object (for example
    the cut-off last line of a file whose writer died) raises ``ValueError``
    naming the file and line number.
    """
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(
                    f"{Path(path).name}, line {lineno}: not valid JSON ({exc})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{Path(path).name}, line {lineno}: "
                    f"expected a JSON object, got {type(record).__name__}"
                )
            yield record

"""The XLSX writer (XlsxWriter in ``constant_memory`` mode)."""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name

from ._base import HEADERS, BaseWriter, scrub, short_name

SHEET_NAME = "Comments"
MAX_CELL_CHARS = 32_767
"""Excel's limit on one cell's text, in UTF-16 code units."""
TRUNCATION_MARK = "\u2026"
"""Last character of a cell whose text was cut to :data:`MAX_CELL_CHARS`."""
SHEET_ROWS = 1_048_576
"""Excel's rows per sheet, the header row included."""

_NUMERIC_COLUMNS = frozenset({"depth", "likes", "replies"})
_WIDTHS = {
    "id": 14,
    "parent_id": 14,
    "depth": 7,
    "author": 20,
    "published_at": 26,
    "text": 80,
    "permalink": 50,
    "likes": 9,
    "replies": 9,
}


class XlsxWriter(BaseWriter):
    """One worksheet named ``Comments``: a bold, frozen header row of
    :data:`HEADERS` with a filter, then one row per record.

    * ``id``, ``parent_id``, ``author``, ``published_at`` (the ISO 8601
      string, so it round-trips exactly), ``text`` and ``permalink`` are
      string cells; ``depth``, ``likes`` and ``replies`` are number cells.
      ``None`` leaves the cell empty.
    * Strings are only ever written as string cells (and the workbook has
      ``strings_to_formulas``/``strings_to_urls``/``strings_to_numbers`` off),
      so text such as ``=HYPERLINK(...)`` is a plain string cell, never a
      formula or link, and needs no ``'`` prefix. Permalinks are plain strings
      too (Excel allows only 65,530 hyperlinks per sheet).
    * The text column wraps, keeping line breaks; all cells align to the top.
    * **Excel holds at most 32,767 characters in a cell.** Longer values
      (in practice only ``text``) are cut to fit and end with ``…``. CSV, JSON
      and NDJSON keep the full text.
    * **Excel holds at most 1,048,576 rows per sheet.** After 1,048,575
      records the writer continues on ``Comments (2)``, ``Comments (3)``, ...
      each with its own header row.
    * Characters XML cannot carry (control characters other than tab and
      newline, so also a bare ``\\r``) are stored as the ``_xHHHH_`` escapes
      of the XLSX format, which Excel decodes (openpyxl does not); lone
      surrogates become U+FFFD.

    Memory stays flat: only the current row is in memory; rows stream to temp
    files in a private directory beside ``path`` (not ``/tmp``, which may be
    RAM-backed), removed on close or abort.

    Speed: XlsxWriter's generic per-cell path (``write_string`` and friends)
    cost about 46 µs per comment, three quarters of an XLSX export (1M
    comments: 62 s, now 27 s; see ``bench/export_write.py``). Where the
    installed XlsxWriter has the constant-memory internals this class knows
    (checked per sheet), a data row is instead written as one string of
    ``<row>`` XML straight into XlsxWriter's row file, the same bytes
    XlsxWriter would write (the tests compare both paths byte for byte).
    Set :attr:`direct_rows` false to always use the public methods.
    """

    sheet_rows = SHEET_ROWS
    direct_rows = True

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        super().__init__(path)
        self.columns = tuple(columns)
        self._tmpdir = tempfile.mkdtemp(
            prefix=f".{short_name(self.path)}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            self._wb = xlsxwriter.Workbook(
                str(self.path),
                {
                    "constant_memory": True,
                    "tmpdir": self._tmpdir,
                    "strings_to_numbers": False,
                    "strings_to_formulas": False,
                    "strings_to_urls": False,
                    # Python's zipfile only adds ZIP64 records to members that
                    # need them (a sheet over 2 GiB); without this such an
                    # export would fail at close.
                    "use_zip64": True,
                },
            )
            self._header_format = self._wb.add_format(
                {"bold": True, "valign": "top", "bottom": 1}
            )
            cell = self._wb.add_format({"valign": "top"})
            wrap = self._wb.add_format({"valign": "top", "text_wrap": True})
            self._formats = tuple(wrap if c == "text" else cell for c in self.columns)
            # (column, key, format, numeric) per column, for the public path.
            self._plan = tuple(
                (col, key, self._formats[col], key in _NUMERIC_COLUMNS)
                for col, key in enumerate(self.columns)
            )
            self._sheets: list[Any] = []
            self._new_sheet()
        except BaseException:
            self._release()
            raise

    # -- sheets ---------------------------------------------------------------

    def _new_sheet(self) -> None:
        if self._sheets:
            self._end_sheet()
        number = len(self._sheets) + 1
        ws = self._wb.add_worksheet(
            SHEET_NAME if number == 1 else f"{SHEET_NAME} ({number})"
        )
        for col, key in enumerate(self.columns):
            ws.set_column(col, col, _WIDTHS.get(key, 15), self._formats[col])
        ws.freeze_panes(1, 0)
        self._sheets.append(ws)
        self._ws = ws
        self._row = 1
        self._last_data_row = 0
        self._direct = self.direct_rows and _has_row_file(ws)
        if self._direct:
            self._emit = ws.fh.write
            # Style indexes are handed out on first use: header first, as on
            # the public path, so both give the same styles.xml.
            header_s = f' s="{self._header_format._get_xf_index()}"'
            # (cell-ref letters, ' s="N"', key, numeric) per column.
            self._direct_plan = tuple(
                (xl_col_to_name(col), f' s="{fmt._get_xf_index()}"', key, numeric)
                for col, key, fmt, numeric in self._plan
            )
            self._emit(
                '<row r="1">'
                + "".join(
                    f'<c r="{xl_col_to_name(col)}1"{header_s} t="inlineStr">'
                    f"<is><t>{_escape(HEADERS[key])}</t></is></c>"
                    for col, key in enumerate(self.columns)
                )
                + "</row>"
            )
            ws._check_dimensions(0, 0)
            ws._check_dimensions(0, len(self.columns) - 1)
        else:
            for col, key in enumerate(self.columns):
                ws.write_string(0, col, HEADERS[key], self._header_format)

    def _end_sheet(self) -> None:
        ws = self._ws
        if self._direct and self._last_data_row:
            ws._check_dimensions(self._last_data_row, 0)
        ws.autofilter(0, 0, self._row - 1, len(self.columns) - 1)

    # -- rows -------------------------------------------------------------------

    def _write(self, record: Mapping[str, Any]) -> None:
        if self._row >= self.sheet_rows:
            self._new_sheet()
        if self._direct:
            self._write_direct(record)
        else:
            self._write_cells(record)
        self._row += 1

    def _write_cells(self, record: Mapping[str, Any]) -> None:
        """One row through XlsxWriter's public cell methods."""
        ws = self._ws
        row = self._row
        get = record.get
        for col, key, fmt, numeric in self._plan:
            value = get(key)
            if value is None:
                continue
            if numeric and (
                type(value) is int or (type(value) is float and math.isfinite(value))
            ):
                ws.write_number(row, col, value, fmt)
                continue
            text = _cell_text(value)
            if text.startswith("<r>") and text.endswith("</r>"):
                # XlsxWriter's constant_memory mode writes an inline string
                # that looks like "<r>...</r>" as raw rich-text XML, without
                # escaping: "<r>a & b</r>" would corrupt the whole file. As
                # a real rich string (plain runs) it is escaped properly.
                # (Control characters in such a string come out escaped
                # twice: a cosmetic slip, the file stays valid.) The direct
                # path has no such special case.
                ws.write_rich_string(row, col, text[:1], text[1:2], text[2:], fmt)
            else:
                ws.write_string(row, col, text, fmt)

    def _write_direct(self, record: Mapping[str, Any]) -> None:
        """One row as ``<row>`` XML, byte for byte what XlsxWriter writes."""
        ref = str(self._row + 1)
        parts = [f'<row r="{ref}">']
        get = record.get
        for letters, style, key, numeric in self._direct_plan:
            value = get(key)
            if value is None:
                continue
            if numeric and (
                type(value) is int or (type(value) is float and math.isfinite(value))
            ):
                parts.append(f'<c r="{letters}{ref}"{style}><v>{value:.16G}</v></c>')
                continue
            text = value if type(value) is str else str(value)
            if not text.isascii() or len(text) > _HALF_CELL:
                text = _cell_text(text)
            if _NEEDS_OOXML_ESCAPE.search(text):
                text = _ooxml_escape(text)
            space = (
                ' xml:space="preserve"'
                if text[:1].isspace() or text[-1:].isspace()
                else ""
            )
            parts.append(
                f'<c r="{letters}{ref}"{style} t="inlineStr">'
                f"<is><t{space}>{_escape(text)}</t></is></c>"
            )
        if len(parts) > 1:  # XlsxWriter writes no <row> for a row of blanks
            parts.append("</row>")
            self._emit("".join(parts))
            self._last_data_row = self._row

    # -- end ----------------------------------------------------------------------

    def _finish(self) -> None:
        self._end_sheet()
        try:
            self._wb.close()
        finally:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _release(self) -> None:
        # Close XlsxWriter's temp row files without assembling the workbook.
        wb = getattr(self, "_wb", None)
        if wb is not None:
            wb.fileclosed = True  # never assemble it later
            for ws in wb.worksheets():
                fh = getattr(ws, "row_data_fh", None)
                if fh is not None:
                    try:
                        fh.close()
                    except OSError:
                        pass
        shutil.rmtree(self._tmpdir, ignore_errors=True)


def _has_row_file(ws: Any) -> bool:
    """True if ``ws`` is a constant_memory worksheet as XlsxWriter 3.x makes
    them: rows go as XML text to ``fh`` (the temp row file), the cell table
    is empty, and ``_check_dimensions`` records the used range."""
    fh = getattr(ws, "fh", None)
    return (
        getattr(ws, "constant_memory", False) is True
        and fh is not None
        and fh is getattr(ws, "row_data_fh", None)
        and callable(getattr(fh, "write", None))
        and callable(getattr(ws, "_check_dimensions", None))
        and getattr(ws, "previous_row", None) == 0
        and not getattr(ws, "table", True)
    )


_HALF_CELL = MAX_CELL_CHARS // 2  # shorter strings cannot exceed the limit


def _cell_text(value: object) -> str:
    """A value as cell text: lone surrogates replaced, cut to fit a cell."""
    text = value if type(value) is str else str(value)
    if not text.isascii():
        text = scrub(text)
    if len(text) > _HALF_CELL:
        text = fit_cell(text)
    return text


def fit_cell(text: str) -> str:
    """``text`` cut to :data:`MAX_CELL_CHARS` UTF-16 units (never inside a
    surrogate pair), ending with :data:`TRUNCATION_MARK`, if it is longer."""
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) <= MAX_CELL_CHARS * 2:
        return text
    head = units[: (MAX_CELL_CHARS - 1) * 2].decode("utf-16-le", "ignore")
    return head + TRUNCATION_MARK


# Excel's escapes for what XML 1.0 cannot carry, as XlsxWriter applies them:
# a literal "_xHHHH_" gets its underscore escaped, control characters (not
# tab or newline) and U+FFFE/U+FFFF become "_xHHHH_".
_NEEDS_OOXML_ESCAPE = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9a-fA-F]{4}_")
_LITERAL_ESCAPE = re.compile(r"(_x[0-9a-fA-F]{4}_)")
_UNSAFE_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def _ooxml_escape(text: str) -> str:
    text = _LITERAL_ESCAPE.sub(r"_x005F\1", text)
    return _UNSAFE_CHAR.sub(lambda m: f"_x{ord(m.group()):04X}_", text)


def _escape(text: str) -> str:
    """XML character data as XlsxWriter escapes it (quotes left alone)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text

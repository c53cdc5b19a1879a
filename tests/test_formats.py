"""Tests of exporthub.formats: writers read back with openpyxl, csv and
orjson; conversion; ZIP assembly."""

from __future__ import annotations

import csv
import io
import os
import re
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import openpyxl
import orjson
import pytest
import xlsxwriter
import xlsxwriter.exceptions

from exporthub.formats import (
    BASE_COLUMNS,
    FORMATS,
    HEADERS,
    OPTIONAL_COLUMNS,
    UnknownFormat,
    convert,
    open_writer,
    read_ndjson,
    write_zip,
)
from exporthub.formats.xlsx import MAX_CELL_CHARS, XlsxWriter
from exporthub.sources.base import Comment

WHEN = datetime(2024, 5, 1, 12, 30, 5, tzinfo=UTC)


def comment(id: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "parent_id": None,
        "depth": 0,
        "author": "someone",
        "published_at": WHEN,
        "text": "plain",
        "permalink": f"https://example.com/c/{id}",
        "likes": 1,
        "replies": 0,
    }
    values.update(fields)
    return Comment(id=id, **values).to_record()


RECORDS: list[dict[str, Any]] = [
    comment(
        "1001",
        author="Zoë Ünïcødé 山田",
        text="Hello — ça va? 😀👍🏽",
        likes=12,
        replies=3,
    ),
    comment(
        "1002",
        parent_id="1001",
        depth=1,
        author=None,
        text="line one\nline two\n\nline four",
    ),
    comment(
        "1003",
        parent_id="1001",
        depth=1,
        author="@attacker",
        text='=HYPERLINK("http://evil.example","click me")',
    ),
    comment("0042", parent_id="1003", depth=2, author="+plus", text="-1+2", likes=0),
    comment(
        "1005",
        text='quote " and, comma; tab\there',
        published_at=datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC),
    ),
    comment("1006", text="<r>a & b</r>", author="<b>bold?</b>"),
    comment("1007", text="", author=""),
    comment("-x8Kq", text="  leading and trailing spaces  ", likes=None, replies=None),
]
EXTRA = ("likes", "replies")
XLSX_HEADER = (
    "ID",
    "Parent ID",
    "Depth",
    "Author",
    "Published (UTC)",
    "Text",
    "Permalink",
    "Likes",
    "Replies",
)


def write_all(
    fmt: str, path: Path, records: list[dict[str, Any]], extra: tuple[str, ...] = EXTRA
) -> Path:
    with open_writer(fmt, path, extra) as writer:
        for record in records:
            writer.write(record)
    assert writer.count == len(records)
    return path


def xlsx_rows(path: Path, sheet: str | None = None) -> list[tuple[Any, ...]]:
    wb = openpyxl.load_workbook(path)
    ws = wb[sheet] if sheet else wb.active
    return list(ws.iter_rows(values_only=True))


def expected_xlsx_row(record: dict[str, Any], keys: tuple[str, ...]) -> tuple[Any, ...]:
    # openpyxl reads a cell that was never written as None.
    return tuple(record.get(key) for key in keys)


def unescape_ooxml(text: str) -> str:
    """Decode Excel's _xHHHH_ escapes (openpyxl leaves them in inline strings)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(raw[3:].decode("utf-8"), newline="")))


def only_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- interface ---------------------------------------------------------------


def test_constants() -> None:
    assert FORMATS == ("xlsx", "csv", "json", "ndjson")
    assert BASE_COLUMNS == (
        "id",
        "parent_id",
        "depth",
        "author",
        "published_at",
        "text",
        "permalink",
    )
    assert OPTIONAL_COLUMNS == ("likes", "replies")
    assert set(HEADERS) == set(BASE_COLUMNS + OPTIONAL_COLUMNS)
    assert HEADERS["published_at"] == "Published (UTC)"
    assert HEADERS["parent_id"] == "Parent ID"


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(UnknownFormat) as info:
        open_writer("pdf", tmp_path / "x.pdf")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "'pdf'" in message
    for fmt in FORMATS:
        assert fmt in message
    with pytest.raises(UnknownFormat):
        open_writer("XLSX", tmp_path / "x.xlsx")
    src = write_all("ndjson", tmp_path / "src.ndjson", RECORDS)
    with pytest.raises(UnknownFormat):
        convert(src, "xml", tmp_path / "out.xml")
    assert only_files(tmp_path) == ["src.ndjson"]


def test_unknown_extra_column(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shares"):
        open_writer("csv", tmp_path / "x.csv", ["likes", "shares"])
    assert only_files(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_writer_lifecycle(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    writer = open_writer(fmt, path)
    writer.write(RECORDS[0])
    assert writer.count == 1
    writer.close()
    writer.close()  # idempotent
    assert path.exists()
    with pytest.raises(ValueError, match="closed"):
        writer.write(RECORDS[1])
    assert writer.count == 1
    writer.abort()  # discards even a finished file
    writer.abort()
    writer.close()  # no-op after abort
    assert only_files(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_context_manager_aborts_on_exception(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    with pytest.raises(RuntimeError), open_writer(fmt, path, EXTRA) as writer:
        for record in RECORDS:
            writer.write(record)
        raise RuntimeError("fetch failed")
    # No partial file and, for XLSX, no temp directory left behind.
    assert only_files(tmp_path) == []


def test_failed_close_removes_the_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_close(self: xlsxwriter.Workbook) -> None:
        Path(self.filename).write_bytes(b"PK\x03\x04 half a zip")
        raise xlsxwriter.exceptions.FileCreateError("No space left on device")

    monkeypatch.setattr(xlsxwriter.Workbook, "close", broken_close)
    writer = open_writer("xlsx", tmp_path / "out.xlsx")
    writer.write(RECORDS[0])
    with pytest.raises(xlsxwriter.exceptions.FileCreateError):
        writer.close()
    assert only_files(tmp_path) == []  # neither the file nor the temp dir
    writer.close()  # and it stays closed


@pytest.mark.parametrize("fmt", FORMATS)
def test_close_leaves_only_the_file(tmp_path: Path, fmt: str) -> None:
    write_all(fmt, tmp_path / f"out.{fmt}", RECORDS)
    assert only_files(tmp_path) == [f"out.{fmt}"]


# -- XLSX ------------------------------------------------------------------


@pytest.mark.parametrize("direct", [True, False])
def test_xlsx_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    monkeypatch.setattr(XlsxWriter, "direct_rows", direct)
    path = write_all("xlsx", tmp_path / "out.xlsx", RECORDS, ("replies", "likes"))
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Comments"]
    ws = wb["Comments"]
    rows = list(ws.iter_rows(values_only=True))
    keys = BASE_COLUMNS + OPTIONAL_COLUMNS
    assert rows[0] == XLSX_HEADER
    assert rows[1:] == [expected_xlsx_row(r, keys) for r in RECORDS]

    # Types: ids and dates are text, counts are numbers.
    assert ws["A5"].value == "0042" and ws["A5"].data_type == "s"
    assert ws["E2"].value == "2024-05-01T12:30:05+00:00"
    assert ws["C3"].value == 1 and ws["C3"].data_type == "n"
    # Formula-looking text is a string cell, not a formula.
    for ref in ("F4", "D4", "F5", "D5"):
        assert ws[ref].data_type == "s", ref
    with zipfile.ZipFile(path) as zf:
        sheet_xml = zf.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml
    assert "<hyperlinks" not in sheet_xml
    # Layout: bold frozen header, wrapped text column, widths, filter.
    assert ws.freeze_panes == "A2"
    assert all(cell.font.b for cell in ws[1])
    assert ws["F3"].alignment.wrap_text
    assert ws.column_dimensions["F"].width > ws.column_dimensions["C"].width
    assert ws.auto_filter.ref == f"A1:I{len(RECORDS) + 1}"


def sheet_parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {
            n: zf.read(n)
            for n in zf.namelist()
            if n.startswith(("xl/worksheets/", "xl/styles"))
        }


def test_xlsx_direct_rows_are_what_xlsxwriter_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [r for r in RECORDS if not r["text"].startswith("<r>")] + [
        comment("c1", text="cr\rnul\x00 _x0041_ \ufffe end", author="\ttabbed"),
        comment("c2", text="z" * 40_000, likes=10**17),
        comment("c3", text="trailing newline\n", author=" ", likes=None),
        {"likes": 1.5, "replies": float("nan")},  # odd values
        {},  # a row of blanks
        comment("c4", text="after the blank row"),
    ]
    monkeypatch.setattr(XlsxWriter, "sheet_rows", 5)  # several sheets too
    paths = {}
    for direct in (True, False):
        monkeypatch.setattr(XlsxWriter, "direct_rows", direct)
        path = tmp_path / f"{direct}.xlsx"
        with open_writer("xlsx", path, EXTRA) as writer:
            assert isinstance(writer, XlsxWriter) and writer._direct is direct
            for record in records:
                writer.write(record)
        paths[direct] = path
    direct_parts, public_parts = sheet_parts(paths[True]), sheet_parts(paths[False])
    assert len(direct_parts) == 5  # 13 records: 4 sheets, and styles
    assert direct_parts == public_parts


@pytest.mark.parametrize("direct", [True, False])
def test_xlsx_rich_text_lookalike_is_plain_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    # XlsxWriter's public path would write this as raw XML: a corrupt file.
    monkeypatch.setattr(XlsxWriter, "direct_rows", direct)
    texts = ["<r>a & b</r>", "<r><t>x</t></r>", "<r></r>", "<r>\x01</r>"]
    path = write_all(
        "xlsx",
        tmp_path / "out.xlsx",
        [comment(str(i), text=t) for i, t in enumerate(texts)],
    )
    cells = [row[5] for row in xlsx_rows(path)[1:]]
    assert cells[:3] == texts[:3]
    if direct:
        assert unescape_ooxml(cells[3]) == texts[3]


def test_xlsx_base_columns_only(tmp_path: Path) -> None:
    path = write_all("xlsx", tmp_path / "out.xlsx", RECORDS, ())
    rows = xlsx_rows(path)
    assert rows[0] == XLSX_HEADER[:7]
    assert rows[1:] == [expected_xlsx_row(r, BASE_COLUMNS) for r in RECORDS]


def test_xlsx_truncates_text_over_excel_limit(tmp_path: Path) -> None:
    long_ascii = "x" * 40_000
    long_emoji = "😀" * 20_000  # 40,000 UTF-16 units
    exact = "y" * MAX_CELL_CHARS
    records = [
        comment("1", text=long_ascii),
        comment("2", text=long_emoji),
        comment("3", text=exact),
    ]
    rows = xlsx_rows(write_all("xlsx", tmp_path / "out.xlsx", records))
    ascii_cell, emoji_cell, exact_cell = (row[5] for row in rows[1:])
    assert len(ascii_cell) == MAX_CELL_CHARS
    assert ascii_cell == "x" * (MAX_CELL_CHARS - 1) + "…"
    assert len(emoji_cell.encode("utf-16-le")) // 2 <= MAX_CELL_CHARS
    assert emoji_cell == "😀" * ((MAX_CELL_CHARS - 1) // 2) + "…"
    assert exact_cell == exact  # at the limit: untouched

    # The other formats keep the full text.
    write_all("csv", tmp_path / "out.csv", records)
    assert read_csv(tmp_path / "out.csv")[1][5] == long_ascii
    write_all("json", tmp_path / "out.json", records)
    assert orjson.loads((tmp_path / "out.json").read_bytes())[1]["text"] == long_emoji


def test_xlsx_control_characters(tmp_path: Path) -> None:
    text = "cr\rlf\r\nnul\x00bell\x07 literal _x0041_ end\ufffe"
    path = write_all("xlsx", tmp_path / "out.xlsx", [comment("1", text=text)])
    cell = xlsx_rows(path)[1][5]
    # Stored with Excel's _xHHHH_ escapes (openpyxl doesn't decode them).
    assert unescape_ooxml(cell) == text


def test_xlsx_continues_on_new_sheet_past_row_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(XlsxWriter, "sheet_rows", 4)  # header + 3 records
    records = [comment(str(i), text=f"comment {i}") for i in range(7)]
    path = write_all("xlsx", tmp_path / "out.xlsx", records)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Comments", "Comments (2)", "Comments (3)"]
    ids = []
    for ws in wb.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        assert rows[0] == XLSX_HEADER
        assert ws.freeze_panes == "A2"
        ids += [row[0] for row in rows[1:]]
    assert ids == [str(i) for i in range(7)]
    assert len(list(wb["Comments (3)"].iter_rows())) == 2


# -- CSV --------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    path = write_all("csv", tmp_path / "out.csv", RECORDS)
    rows = read_csv(path)
    keys = BASE_COLUMNS + OPTIONAL_COLUMNS
    assert rows[0] == list(keys)

    def guarded(value: str) -> str:
        return "'" + value if value[:1] in ("=", "+", "-", "@") else value

    expected = []
    for record in RECORDS:
        row = ["" if record.get(k) is None else str(record[k]) for k in keys]
        row[3] = guarded(row[3])
        row[5] = guarded(row[5])
        expected.append(row)
    assert rows[1:] == expected
    # Spot checks of the rules.
    assert rows[3][5] == '\'=HYPERLINK("http://evil.example","click me")'
    assert rows[3][3] == "'@attacker"
    assert rows[4][5] == "'-1+2" and rows[4][3] == "'+plus"
    assert rows[8][0] == "-x8Kq"  # ids are never prefixed
    assert rows[2][5] == "line one\nline two\n\nline four"
    assert rows[2][3] == ""  # None author


def test_csv_guards_tab_and_cr_too(tmp_path: Path) -> None:
    records = [comment("1", author="\tTAB", text="\r=1+1"), comment("2", text="a=b")]
    rows = read_csv(write_all("csv", tmp_path / "out.csv", records))
    assert (rows[1][3], rows[1][5]) == ("'\tTAB", "'\r=1+1")
    assert rows[2][5] == "a=b"  # only a leading trigger counts


def test_csv_bytes(tmp_path: Path) -> None:
    path = write_all("csv", tmp_path / "out.csv", RECORDS[1:2], ())
    assert path.read_bytes() == (
        b"\xef\xbb\xbfid,parent_id,depth,author,published_at,text,permalink\r\n"
        b'1002,1001,1,,2024-05-01T12:30:05+00:00,"line one\nline two\n\nline four",'
        b"https://example.com/c/1002\r\n"
    )


# -- JSON / NDJSON ------------------------------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    path = write_all("json", tmp_path / "out.json", RECORDS)
    assert orjson.loads(path.read_bytes()) == RECORDS
    raw = path.read_bytes()
    assert raw.startswith(b"[\n{") and raw.endswith(b"}\n]\n")
    assert raw.count(b"},\n{") == len(RECORDS) - 1


def test_ndjson_round_trip(tmp_path: Path) -> None:
    path = write_all("ndjson", tmp_path / "out.ndjson", RECORDS)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(RECORDS) + 1
    assert [orjson.loads(line) for line in lines[:-1]] == RECORDS
    assert list(read_ndjson(path)) == RECORDS
    # Key order is the record's.
    assert list(next(read_ndjson(path))) == list(RECORDS[0])


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_records(tmp_path: Path, fmt: str) -> None:
    path = write_all(fmt, tmp_path / f"out.{fmt}", [], ())
    if fmt == "xlsx":
        assert xlsx_rows(path) == [XLSX_HEADER[:7]]
    elif fmt == "csv":
        assert read_csv(path) == [list(BASE_COLUMNS)]
    elif fmt == "json":
        assert orjson.loads(path.read_bytes()) == []
        assert path.read_bytes() == b"[]\n"
    else:
        assert path.read_bytes() == b""
        assert list(read_ndjson(path)) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_lone_surrogate_becomes_replacement_character(tmp_path: Path, fmt: str) -> None:
    # What json.loads makes of "\ud83d" - half an emoji cut by a platform.
    record = comment("1", text="half \ud83d emoji", author="\udc00x")
    path = write_all(fmt, tmp_path / f"out.{fmt}", [record])
    if fmt == "xlsx":
        row = xlsx_rows(path)[1]
        assert (row[3], row[5]) == ("\ufffdx", "half \ufffd emoji")
    elif fmt == "csv":
        assert read_csv(path)[1][5] == "half \ufffd emoji"
    elif fmt == "json":
        assert orjson.loads(path.read_bytes())[0]["text"] == "half \ufffd emoji"
    else:
        assert next(read_ndjson(path))["author"] == "\ufffdx"


def test_read_ndjson_skips_blank_lines_and_reports_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"id": "1"}\n\n  \n{"id": "2"}')  # no final newline
    assert list(read_ndjson(path)) == [{"id": "1"}, {"id": "2"}]

    path.write_bytes(b'{"id": "1"}\n{"id": "2"}\n{"id": "3", "te')
    records = read_ndjson(path)
    assert next(records) == {"id": "1"}
    assert next(records) == {"id": "2"}
    with pytest.raises(ValueError, match="line 3"):
        next(records)

    path.write_bytes(b'{"id": "1"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2: expected a JSON object"):
        list(read_ndjson(path))


# -- convert -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_matches_direct_writing(tmp_path: Path, fmt: str) -> None:
    src = write_all("ndjson", tmp_path / "src.ndjson", RECORDS)
    direct = write_all(fmt, tmp_path / f"direct.{fmt}", RECORDS)
    dest = tmp_path / f"converted.{fmt}"
    assert convert(src, fmt, dest, EXTRA) == len(RECORDS)
    if fmt == "xlsx":
        assert xlsx_rows(dest) == xlsx_rows(direct)
    else:
        assert dest.read_bytes() == direct.read_bytes()
    assert only_files(tmp_path) == sorted(
        ["src.ndjson", f"direct.{fmt}", f"converted.{fmt}"]
    )


def test_convert_round_trip_through_json(tmp_path: Path) -> None:
    src = write_all("ndjson", tmp_path / "src.ndjson", RECORDS)
    assert convert(src, "json", tmp_path / "out.json") == len(RECORDS)
    assert orjson.loads((tmp_path / "out.json").read_bytes()) == list(read_ndjson(src))
    # ndjson -> ndjson is byte-identical, and may even replace its source.
    assert convert(src, "ndjson", src) == len(RECORDS)
    assert list(read_ndjson(src)) == RECORDS


def test_convert_zero_records(tmp_path: Path) -> None:
    src = tmp_path / "src.ndjson"
    src.write_bytes(b"")
    assert convert(src, "xlsx", tmp_path / "out.xlsx") == 0
    assert xlsx_rows(tmp_path / "out.xlsx") == [XLSX_HEADER[:7]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_convert_leaves_nothing_at_dest(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src.ndjson"
    good = b"".join(orjson.dumps(r) + b"\n" for r in RECORDS)
    src.write_bytes(good + b'{"id": "broken\n' + good)
    dest = tmp_path / f"out.{fmt}"
    with pytest.raises(ValueError, match=f"line {len(RECORDS) + 1}"):
        convert(src, fmt, dest, EXTRA)
    assert only_files(tmp_path) == ["src.ndjson"]

    # An existing file at dest survives a failed conversion untouched.
    dest.write_bytes(b"previous export")
    with pytest.raises(ValueError):
        convert(src, fmt, dest, EXTRA)
    assert dest.read_bytes() == b"previous export"
    assert only_files(tmp_path) == sorted(["src.ndjson", f"out.{fmt}"])


def test_convert_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        convert(tmp_path / "nope.ndjson", "csv", tmp_path / "out.csv")
    assert only_files(tmp_path) == []


# -- ZIP -------------------------------------------------------------------


def make_members(tmp_path: Path) -> list[tuple[str, Path]]:
    members = []
    for fmt in FORMATS:
        path = write_all(fmt, tmp_path / f"f3a9.{fmt}", RECORDS)
        members.append((f"comments.{fmt}", path))
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (3 * 4096 + 17))  # ~3 MiB, several chunks
    members.append(("extra/big.bin", big))
    return members


def test_write_zip(tmp_path: Path) -> None:
    members = make_members(tmp_path)
    dest = tmp_path / "out" / "export.zip"
    dest.parent.mkdir()
    size = write_zip(iter(members), dest)  # any iterable, even a generator
    assert size == dest.stat().st_size
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == [name for name, _ in members]
        for name, path in members:
            assert zf.read(name) == path.read_bytes()
            assert zf.getinfo(name).compress_type == zipfile.ZIP_DEFLATED
    assert only_files(dest.parent) == ["export.zip"]


def test_write_zip_old_timestamp(tmp_path: Path) -> None:
    member = tmp_path / "old.csv"
    member.write_bytes(b"a,b\r\n")
    os.utime(member, (0, 0))  # 1970: before ZIP's 1980 epoch
    write_zip([("old.csv", member)], tmp_path / "out.zip")
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert zf.read("old.csv") == b"a,b\r\n"


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_json_writers_take_any_mapping(tmp_path: Path, fmt: str) -> None:
    record = MappingProxyType(RECORDS[0])
    path = write_all(fmt, tmp_path / f"out.{fmt}", [record])  # type: ignore[list-item]
    data = orjson.loads(path.read_bytes())
    assert (data[0] if fmt == "json" else data) == RECORDS[0]


def test_write_zip_empty(tmp_path: Path) -> None:
    dest = tmp_path / "empty.zip"
    assert write_zip([], dest) == dest.stat().st_size
    with zipfile.ZipFile(dest) as zf:
        assert zf.namelist() == []


def test_write_zip_missing_member_leaves_nothing(tmp_path: Path) -> None:
    members = make_members(tmp_path)
    members.insert(2, ("comments.missing", tmp_path / "missing.csv"))
    before = only_files(tmp_path)
    dest = tmp_path / "export.zip"
    with pytest.raises(FileNotFoundError):
        write_zip(members, dest)
    assert only_files(tmp_path) == before

    dest.write_bytes(b"old zip")
    with pytest.raises(FileNotFoundError):
        write_zip(members, dest)
    assert dest.read_bytes() == b"old zip"
    assert only_files(tmp_path) == sorted([*before, "export.zip"])


@pytest.mark.parametrize(
    "names",
    [("a.csv", "a.csv"), ("a.csv", "./a.csv"), ("d/a.csv", "d/x/../a.csv")],
)
def test_write_zip_refuses_duplicates(tmp_path: Path, names: tuple[str, str]) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="duplicate"):
        write_zip([(names[0], path), (names[1], path)], tmp_path / "out.zip")
    assert only_files(tmp_path) == ["a.csv"]


@pytest.mark.parametrize(
    "name", ["", "/etc/passwd", "../up.csv", "a/../../up.csv", "."]
)
def test_write_zip_refuses_unsafe_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="bad ZIP member name"):
        write_zip([(name, path)], tmp_path / "out.zip")
    assert only_files(tmp_path) == ["a.csv"]


# -- memory ----------------------------------------------------------------


def synthetic(count: int) -> Any:
    for i in range(count):
        yield comment(str(i), text=f"comment number {i} " * 20, parent_id=str(i - 1))


@pytest.mark.parametrize("fmt", FORMATS)
def test_memory_does_not_grow_with_record_count(tmp_path: Path, fmt: str) -> None:
    peaks = []
    for count in (2_000, 10_000):
        tracemalloc.start()
        try:
            with open_writer(fmt, tmp_path / f"{count}.{fmt}", EXTRA) as writer:
                for record in synthetic(count):
                    writer.write(record)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    small, large = peaks
    # Five times the records, about the same peak (buffers, not data).
    assert large < small * 1.3 + 256 * 1024, peaks

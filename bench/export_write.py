#!/usr/bin/env python
"""Benchmark the export writers: time and peak memory per format.

Writes N synthetic comments (default 1,000,000) to each format, then ZIPs the
four files, each step in its own child process so that its peak RSS
(VmHWM) is its own. The same is done at 100,000 comments for comparison.

    PYTHONPATH=src python bench/export_write.py                 # 100k and 1M
    PYTHONPATH=src python bench/export_write.py --count 200000 --json out.json
    PYTHONPATH=src python bench/export_write.py --count 100000 --profile xlsx

Columns: seconds (whole step, including close()), of which close() alone,
records per second (for the ZIP: MiB of input per second), peak RSS of the
child, peak RSS before the first record was written (interpreter, imports
and the synthetic text pool), and the output size. Not a test; needs Linux
for VmHWM (falls back to ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMATS = ("xlsx", "csv", "json", "ndjson")
EXTRA_COLUMNS = ("likes", "replies")
POOL = 2000

_WORDS = (
    "the of and to a in is it you that he was for on are with as I his they be "
    "at one have this from or had by word but what some we can out other were "
    "all there when up use your how said an each she which do their time if "
    "will way about many then them write would like so these her long make "
    "thing see him two has look more day could go come did number sound no "
    "café naïve straße Ελληνικά русский 日本語 中文 한국어 😀 👍 🎉 — “quoted” "
    "https://example.com/some/path?q=1 =SUM(A1:A9) @mention -dash +plus"
).split()


def text_pool(seed: int = 7) -> list[str]:
    """Comment bodies with a realistic spread of lengths (median ~150 chars,
    a long tail to ~8,000), line breaks and non-ASCII."""
    rng = random.Random(seed)
    pool = []
    for _ in range(POOL):
        words = max(1, int(rng.lognormvariate(3.3, 0.9)))
        parts = []
        for _ in range(min(words, 1500)):
            parts.append(rng.choice(_WORDS))
            if rng.random() < 0.02:
                parts.append("\n")
        pool.append(" ".join(parts).replace(" \n ", "\n"))
    return pool


def records(count: int, pool: list[str]) -> Iterator[dict[str, Any]]:
    """``count`` record dicts shaped like ``Comment.to_record()``."""
    authors = [f"user_{i}" for i in range(5000)]
    base_ts = 1_700_000_000
    depth = 0
    for i in range(count):
        cid = str(40_000_000 + i)
        if i % 7 == 0:
            depth = 0
        else:
            depth = min(depth + 1, 6) if i % 3 else max(depth - 1, 0)
        ts = base_ts + i * 3
        published = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))
        yield {
            "id": cid,
            "parent_id": None if depth == 0 else str(40_000_000 + i - 1),
            "depth": depth,
            "author": authors[(i * 7919) % len(authors)] if i % 50 else None,
            "published_at": published,
            "text": pool[(i * 31) % len(pool)],
            "permalink": f"https://news.ycombinator.com/item?id={cid}",
            "likes": (i * 13) % 500,
            "replies": i % 4,
        }


def peak_rss_kib() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(step: str, count: int, workdir: Path, profile: bool) -> dict[str, Any]:
    """Run one step in this (child) process and return its figures."""
    from exporthub.formats import open_writer, write_zip

    pool = text_pool()
    base_rss = peak_rss_kib()
    if step == "zip":
        members = [(f"comments.{f}", workdir / f"{count}.{f}") for f in FORMATS]
        members = [(a, p) for a, p in members if p.exists()]
        start = time.perf_counter()
        size = write_zip(members, workdir / f"{count}.zip")
        close_s = 0.0
        zipped = sum(p.stat().st_size for _, p in members)
    else:
        path = workdir / f"{count}.{step}"
        start = time.perf_counter()
        with open_writer(step, path, EXTRA_COLUMNS) as writer:
            for record in records(count, pool):
                writer.write(record)
            closing = time.perf_counter()
        close_s = time.perf_counter() - closing
        size = path.stat().st_size
        zipped = 0
    seconds = time.perf_counter() - start
    return {
        "step": step,
        "count": count,
        "seconds": round(seconds, 2),
        "close_seconds": round(close_s, 2),
        "records_per_second": round(count / seconds) if step != "zip" else None,
        "input_bytes": zipped,
        "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
        "base_rss_mib": round(base_rss / 1024, 1),
        "bytes": size,
    }


def generate_only(count: int) -> dict[str, Any]:
    """The cost of making the synthetic records, to subtract mentally."""
    pool = text_pool()
    base_rss = peak_rss_kib()
    start = time.perf_counter()
    for _ in records(count, pool):
        pass
    seconds = time.perf_counter() - start
    return {
        "step": "generate",
        "count": count,
        "seconds": round(seconds, 2),
        "close_seconds": 0.0,
        "records_per_second": round(count / seconds) if seconds else None,
        "input_bytes": 0,
        "peak_rss_mib": round(peak_rss_kib() / 1024, 1),
        "base_rss_mib": round(base_rss / 1024, 1),
        "bytes": 0,
    }


def run_child(step: str, count: int, workdir: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        step,
        "--count",
        str(count),
        "--dir",
        str(workdir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{step} at {count} failed (exit {proc.returncode})")
    # Peak RSS comes from the child's own VmHWM: RUSAGE_CHILDREN's ru_maxrss
    # is a maximum over all children so far, and counts the forked copy of
    # this process before exec.
    return json.loads(proc.stdout.strip().splitlines()[-1])


def show(result: dict[str, Any]) -> None:
    rate = result["records_per_second"]
    if rate is None:  # zip: input MiB/s
        rate_text = f"{result['input_bytes'] / 2**20 / result['seconds']:>6.0f} MiB/s"
    else:
        rate_text = f"{rate:>10,}"
    print(
        f"{result['count']:>10,}  {result['step']:<8} {result['seconds']:>8.2f}s"
        f" {result['close_seconds']:>7.2f}s {rate_text}"
        f" {result['peak_rss_mib']:>9.1f} {result['base_rss_mib']:>9.1f}"
        f" {result['bytes'] / 2**20:>10.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument(
        "--compare", type=int, default=100_000, help="also run at this count (0: don't)"
    )
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS)
    parser.add_argument("--no-zip", action="store_true")
    parser.add_argument("--json", metavar="OUT", type=Path)
    parser.add_argument("--dir", type=Path, help="work directory (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument(
        "--profile",
        choices=FORMATS,
        help="profile one format in-process and print the top",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.child == "generate":
            result = generate_only(args.count)
        else:
            result = child(args.child, args.count, args.dir, False)
        print(json.dumps(result))
        return

    workdir = Path(tempfile.mkdtemp(prefix="exporthub-bench-", dir=args.dir))
    try:
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(child, args.profile, args.count, workdir, True)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return

        import orjson
        import xlsxwriter

        counts = [args.count]
        if args.compare and args.compare != args.count:
            counts.insert(0, args.compare)
        print(
            f"python {platform.python_version()}, xlsxwriter "
            f"{xlsxwriter.__version__}, orjson {orjson.__version__}, "
            f"{os.cpu_count()} CPUs, work dir {workdir}"
        )
        print(
            f"{'comments':>10}  {'step':<8} {'seconds':>9} {'close':>8}"
            f" {'rec/s':>10} {'peak MiB':>9} {'base MiB':>9} {'file MiB':>10}"
        )
        results = []
        for count in counts:
            steps = ["generate", *args.formats] + ([] if args.no_zip else ["zip"])
            for step in steps:
                result = run_child(step, count, workdir)
                show(result)
                results.append(result)
            if not args.keep:
                for path in workdir.glob(f"{count}.*"):
                    path.unlink()
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "python": platform.python_version(),
                        "xlsxwriter": xlsxwriter.__version__,
                        "orjson": orjson.__version__,
                        "cpus": os.cpu_count(),
                        "extra_columns": list(EXTRA_COLUMNS),
                        "results": results,
                    },
                    indent=2,
                )
                + "\n"
            )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

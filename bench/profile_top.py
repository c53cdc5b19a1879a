"""Where a server's time goes, from a py-spy ``--format raw`` profile.

``run.py --profile`` records one collapsed-stack file per measured phase
(``bench/results/profiles/<stamp>/<server>-w<k>-<n>.txt``). This prints the
functions with the most samples on top of the stack (self) and anywhere in
it (inclusive), line numbers folded, as shares of the busy samples.

Usage::

    python bench/profile_top.py bench/results/profiles/<stamp>/exporthub-w2-10000.txt
    python bench/profile_top.py FILE --top 30 --match exporthub/realtime
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"\s*\(([^()]*?)(?::\d+)?\)\s*$")


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (to/file.py)``."""
    match = _LINE.search(frame)
    if match is None:
        return frame.strip()
    func = frame[: match.start()].strip()
    parts = match.group(1).split("/")
    return f"{func} ({'/'.join(parts[-2:])})"


def load(path: Path) -> tuple[Counter[str], Counter[str], int]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return own, inclusive, total


def report(path: Path, top: int, match: str | None) -> str:
    own, inclusive, total = load(path)
    lines = [f"{path.name}: {total} busy samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\n  top {top} by {title} time")
        shown = 0
        for name, count in counter.most_common():
            if match and match not in name:
                continue
            lines.append(f"  {100.0 * count / total:6.1f}%  {name}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--match", help="only functions whose name contains this")
    args = parser.parse_args()
    for path in args.profiles:
        print(report(path, args.top, args.match))
        print()


if __name__ == "__main__":
    main()

"""Copy the browser build of the ``centrifuge`` npm client into the package.

The dashboard page loads ``exporthub/web/static/centrifuge.js``; it is the
npm package's own ``dist/centrifuge.js`` (MIT licensed), taken from the
test client's ``tests/node/node_modules`` after ``npm ci``, with the
package's license put in front of it as the license asks, and without the
source-map reference (the map is not shipped). Run ``make vendor-web``
after changing the version in ``tests/node/package.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "tests" / "node" / "node_modules" / "centrifuge"
TARGET = ROOT / "src" / "exporthub" / "web" / "static" / "centrifuge.js"
BUILD = Path("dist") / "centrifuge.js"
SOURCE_MAP_PREFIX = "//# sourceMappingURL="


def vendored(package_dir: Path = PACKAGE_DIR) -> str:
    """The text of ``centrifuge.js`` as it is kept in the package."""
    meta = json.loads((package_dir / "package.json").read_text())
    license_text = (package_dir / "LICENSE").read_text().strip()
    if "*/" in license_text:
        raise ValueError("the license text would end the header comment early")
    build = (package_dir / BUILD).read_text()
    lines = build.rstrip("\n").split("\n")
    # Only the build's last line names the map; earlier lines are code.
    if lines[-1].startswith(SOURCE_MAP_PREFIX):
        lines.pop()
    code = "\n".join(lines)
    header = [
        "/*!",
        f" * {meta['name']} {meta['version']}: {BUILD.as_posix()} of the npm "
        "package, unchanged.",
        " * Vendored by scripts/vendor_centrifuge.py (make vendor-web); do not edit.",
        " *",
        *(f" * {line}".rstrip() for line in license_text.splitlines()),
        " */",
    ]
    return "\n".join(header) + "\n" + code + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    args = parser.parse_args(argv)
    if not (PACKAGE_DIR / BUILD).is_file():
        print(
            f"{PACKAGE_DIR / BUILD} is missing: run `make test` or "
            "`cd tests/node && npm ci` first",
            file=sys.stderr,
        )
        return 2
    text = vendored()
    if args.check:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run make vendor-web", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run code the README shows, so the documentation cannot drift from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def python_block_after(heading: str) -> str:
    """The first Python code block after ``heading`` in the README."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    match = _PYTHON_BLOCK.search(text, start)
    assert match is not None, f"no Python block after {heading!r}"
    return match.group(1)


def load_function(heading: str, name: str) -> Any:
    """Execute the block after ``heading`` and return its function ``name``."""
    namespace: dict[str, Any] = {}
    exec(compile(python_block_after(heading), str(README), "exec"), namespace)
    return namespace[name]

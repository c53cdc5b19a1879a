"""Run a Python server script under a chosen garbage-collector setting and
record how much time its collections took.

``run.py --server-gc MODE`` starts the Python servers through this file, to
see what the collector costs a server and what a setting would change,
without touching the server's code. MODE is one of:

* ``default``: the interpreter's settings, only measured;
* ``off``: ``gc.disable()`` (an upper bound: cyclic garbage is never freed);
* ``freeze``: ``gc.freeze()`` once a second, so objects that survived are
  never scanned again (cyclic garbage among them is never freed either);
* ``threshold:A:B:C``: ``gc.set_threshold(A, B, C)``.

At exit it writes one JSON object to the file named by ``BENCH_GC_STATS``:
collections and seconds per generation, and the process's CPU seconds.

Usage: ``python bench/gc_probe.py MODE path/to/server.py [server args...]``.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import resource
import runpy
import signal
import sys
import threading
import time
from typing import Any

_stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        entry = _stats[info["generation"]]
        entry[0] += 1
        entry[1] += time.perf_counter() - _started[0]


def _freeze_forever() -> None:
    while True:
        time.sleep(1.0)
        gc.freeze()


def apply(mode: str) -> None:
    if mode == "off":
        gc.disable()
    elif mode == "freeze":
        threading.Thread(target=_freeze_forever, daemon=True).start()
    elif mode.startswith("threshold:"):
        gc.set_threshold(*(int(x) for x in mode.split(":")[1:]))
    elif mode != "default":
        raise SystemExit(f"unknown gc mode {mode!r}")


def _write_stats(mode: str) -> None:
    path = os.environ.get("BENCH_GC_STATS")
    if not path:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    record = {
        "mode": mode,
        "collections": {f"gen{g}": n for g, (n, _) in _stats.items()},
        "seconds": {f"gen{g}": round(s, 4) for g, (_, s) in _stats.items()},
        "total_s": round(sum(s for _, s in _stats.values()), 4),
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }
    with open(path, "w") as out:
        json.dump(record, out)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    mode, script = sys.argv[1], sys.argv[2]
    apply(mode)
    gc.callbacks.append(_on_gc)
    atexit.register(_write_stats, mode)
    # uvicorn restores the previous SIGTERM handler and raises the signal
    # again once it has shut down; exiting normally then lets atexit run.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()

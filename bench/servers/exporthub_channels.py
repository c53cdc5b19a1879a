"""Start exporthub for the bench: the real ``exporthub serve``, with the
server API on for the load generator's publications.

The bench measures what users run, so this only sets the environment and
replaces itself with the server process (the runner watches that pid).
Every platform API points at the loopback discard port: no job runs here,
and nothing could leave the machine if one did.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common

PLATFORMS = ("HACKERNEWS", "YOUTUBE", "REDDIT", "BLUESKY", "MASTODON", "GITHUB")
NOWHERE = "http://127.0.0.1:9"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=common.HOST)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTHUB_")}
    env.update({f"EXPORTHUB_{name}_API": NOWHERE for name in PLATFORMS})
    env.update(
        {
            "EXPORTHUB_DATA_DIR": tempfile.mkdtemp(prefix="exporthub-bench-"),
            "EXPORTHUB_TOKEN_SECRET": os.environ.get("BENCH_SECRET", common.SECRET),
            "EXPORTHUB_API_KEY": os.environ.get("BENCH_API_KEY", common.API_KEY),
            "EXPORTHUB_LOG_LEVEL": "WARNING",
        }
    )
    command = [sys.executable, "-m", "exporthub.cli", "serve"]
    command += ["--host", args.host, "--port", str(args.port)]
    os.execve(sys.executable, command, env)


if __name__ == "__main__":
    main()

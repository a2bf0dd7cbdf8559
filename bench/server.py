"""The loopback endpoint in a process of its own: ``python -m bench.server``.

The model server is not part of either framework, so it runs outside the measured process (an
in-process server would take the GIL from the client it serves). It prints its base URL and
serves ``bench.model.loopback_responder`` until its stdin closes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plait.testing import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def loopback_process() -> Iterator[str]:
    """Start the server process; yield its ``base_url``; stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        if not line.startswith("http://"):
            raise RuntimeError(f"bench.server did not start (said {line!r})")
        yield line
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    from bench.model import loopback_responder

    with LoopbackServer(loopback_responder) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()

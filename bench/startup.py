"""8. Start-up: wall time of ``plait --help`` and ``plait graphs`` (import cost).

The median of several runs of the installed command, against the floor of any Python command:
the same interpreter running nothing (``python -c pass``). ``python -X importtime`` of each
command, summed per top-level package, is kept in the JSON to say where the time goes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from bench.core import Row, Sizes, median

PLAIT = str(Path(sys.executable).with_name("plait"))
GOAL_S = 0.5
COMMANDS = {"plait --help": ["--help"], "plait graphs": ["graphs"]}
IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)")


def _wall(argv: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(
            argv, capture_output=True, check=True, env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"}
        )
        times.append(time.perf_counter() - start)
    return median(times)


def heaviest_imports(args: list[str], top: int = 12) -> list[tuple[str, float]]:
    """Import time (ms) per top-level package, from the self times ``-X importtime`` prints."""
    code = f"import sys; sys.argv = ['plait', *{args!r}]; from plait.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    per_package: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if match := IMPORTTIME.match(line):
            package = match.group(3).split(".")[0]
            per_package[package] = per_package.get(package, 0.0) + int(match.group(1)) / 1000
    return sorted(per_package.items(), key=lambda item: -item[1])[:top]


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    floor = _wall([sys.executable, "-c", "pass"], sizes.startup_reps)
    rows, raw = [], {"python_floor_s": floor}
    for label, args in COMMANDS.items():
        wall = _wall([PLAIT, *args], sizes.startup_reps)
        goal = label == "plait --help"
        raw[label] = {"wall_s": wall, "imports_ms": heaviest_imports(args)}
        top = ", ".join(f"{name} {ms:.0f}" for name, ms in raw[label]["imports_ms"][:3])
        rows.append(
            Row(
                f"start-up, {label}",
                wall,
                floor,
                wall / floor,
                "s",
                "python -c pass",
                "plait/python",
                f"< {GOAL_S} s" if goal else "",
                (wall < GOAL_S) if goal else None,
                {"note": f"heaviest imports (ms): {top}", "wall_s": wall},
            )
        )
    return rows, raw

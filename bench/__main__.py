"""``python -m bench [--quick] [--only NAME ...] [--json FILE]``: run, print the table, save.

Each measurement is a module with ``async measure(sizes) -> (rows, raw)``. They run one after
another in this process (except where a measurement starts processes of its own), and a
measurement that fails is reported and the others still run; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.core import FULL, QUICK, machine
from bench.report import print_table

MEASUREMENTS = (
    "overhead",
    "fanout",
    "durable",
    "throughput",
    "storage",
    "tokens",
    "resume",
    "startup",
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, well under a minute (the smoke test's run)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=MEASUREMENTS,
        metavar="NAME",
        help=f"run only these: {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the raw numbers here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = QUICK if args.quick else FULL
    chosen = args.only or MEASUREMENTS
    report: dict[str, Any] = {"machine": machine(), "quick": sizes.quick, "measurements": {}}
    failed = []
    started = time.perf_counter()
    for name in MEASUREMENTS:
        if name not in chosen:
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        begun = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            rows, raw = asyncio.run(module.measure(sizes))
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        seconds = time.perf_counter() - begun
        print(f"bench: {name} done in {seconds:.1f} s", file=sys.stderr, flush=True)
        report["measurements"][name] = {
            "rows": [row.as_json() for row in rows],
            "raw": raw,
            "seconds": seconds,
        }
    report["seconds"] = time.perf_counter() - started
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=_plain))
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())

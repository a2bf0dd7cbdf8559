"""What every measurement shares: result rows, sizes, timing, plait's run path, machine facts."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One line of the table: plait's figure, the baseline's, their ratio, and the goal.

    ``ratio`` is always the figure the goal is about (``ratio_label`` says what it divides);
    ``met`` is None where there is no goal, only a figure to read.
    """

    name: str
    plait: float
    baseline: float
    ratio: float
    unit: str
    baseline_label: str
    ratio_label: str
    goal: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Sizes:
    """How big each measurement runs: ``quick`` for the smoke test, ``full`` for the numbers."""

    quick: bool
    overhead_reps: int
    fanout_ns: tuple[int, ...]
    fanout_latency: float
    fanout_plain_max_n: int  # plain LangGraph's thread pool makes big fan-outs slow to run
    durable_reps: int
    durable_rounds: tuple[int, int]
    durable_branches: tuple[int, int]
    throughput_ms: tuple[int, ...]
    throughput_latency: float
    storage_rounds: tuple[int, ...]
    kills: int
    startup_reps: int


FULL = Sizes(
    quick=False,
    overhead_reps=9,
    fanout_ns=(4, 16, 64, 256),
    fanout_latency=0.2,
    fanout_plain_max_n=256,
    durable_reps=7,
    durable_rounds=(2, 10),
    durable_branches=(4, 64),
    throughput_ms=(1, 10, 100, 1000),
    throughput_latency=0.2,
    storage_rounds=(10, 25, 50),
    kills=20,
    startup_reps=7,
)
QUICK = Sizes(
    quick=True,
    overhead_reps=2,
    fanout_ns=(4, 8),
    fanout_latency=0.05,
    fanout_plain_max_n=8,
    durable_reps=2,
    durable_rounds=(1, 3),
    durable_branches=(2, 6),
    throughput_ms=(1, 10),
    throughput_latency=0.05,
    storage_rounds=(2, 4, 6),
    kills=2,
    startup_reps=2,
)


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def fresh_id() -> str:
    return uuid.uuid4().hex[:12]


@contextmanager
def scratch() -> Iterator[Path]:
    """A private folder for databases, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="plait-bench-") as folder:
        yield Path(folder)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def atimed(coro: Any) -> float:
    start = time.perf_counter()
    await coro
    return time.perf_counter() - start


def machine() -> dict[str, Any]:
    """The facts a reader needs to weigh the numbers."""
    versions = {}
    for name in (
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-sqlite",
        "langchain-core",
        "langchain-openai",
        "openai",
        "aiosqlite",
        "pydantic",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan,) * 3
    import sqlite3

    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"

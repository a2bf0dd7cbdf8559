"""5. Storage: bytes on disk per thread, and how they grow with steps.

A review loop that is never approved runs R rounds (2R + 3 supersteps) for a few R; each
thread gets a database file of its own, so its size on disk (after a WAL checkpoint, less the
size of the same file with no thread in it) is that thread's. The growth exponent is the slope
of log(bytes) against log(supersteps): 1 is linear, 2 quadratic. The checkpoint and write
payloads (the blobs LangGraph stores) are counted too, and the first and last checkpoint's size,
which says why: a checkpoint that grows with the step means total storage grows faster than the
steps.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from bench import baselines, paths
from bench.core import Row, Sizes, scratch
from bench.model import BenchModel, bench_task
from plait.checkpoints.sqlite import open_database

LINEAR = 1.1  # a fitted exponent above this is flagged as worse than linear


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    model = BenchModel()
    task = bench_task("storage review", approve=0)
    raw: dict = {"plait": {}, "plain": {}}
    with scratch() as folder:
        empty_plait, empty_plain = folder / "empty-plait.db", folder / "empty-plain.db"
        async with open_database(empty_plait):
            pass
        with baselines.sqlite_saver(str(empty_plain)) as saver:
            saver.setup()
        for rounds in sizes.storage_rounds:
            steps = 2 * rounds + 3
            plait_db, plain_db = folder / f"plait-{rounds}.db", folder / f"plain-{rounds}.db"
            await paths.run_plait(
                "review", task, db=plait_db, options={"max_iterations": rounds}, model=model
            )
            paths.run_plain("review", task, model, db=plain_db, max_iterations=rounds)
            raw["plait"][rounds] = _usage(plait_db, empty_plait, steps)
            raw["plain"][rounds] = _usage(plain_db, empty_plain, steps)
    top = max(sizes.storage_rounds)
    plait_fit, plain_fit = _exponent(raw["plait"]), _exponent(raw["plain"])
    plait_kb, plain_kb = raw["plait"][top]["disk"] / 1024, raw["plain"][top]["disk"] / 1024

    def growth(side: str) -> str:
        first, last = raw[side][top]["first_checkpoint"], raw[side][top]["last_checkpoint"]
        return f"{side} checkpoint {first / 1024:.1f} -> {last / 1024:.1f} KB"

    rows = [
        Row(
            f"storage per thread, {top}-round review",
            plait_kb,
            plain_kb,
            plait_kb / plain_kb,
            "KB",
            "plain LangGraph",
            "plait/plain",
            "",
            None,
            {
                "note": f"{growth('plait')}; {growth('plain')}",
                "plait_payload_kb": raw["plait"][top]["payload"] / 1024,
                "plain_payload_kb": raw["plain"][top]["payload"] / 1024,
            },
        ),
        Row(
            "storage growth exponent vs steps",
            plait_fit,
            plain_fit,
            plait_fit / plain_fit,
            "exponent",
            "plain LangGraph",
            "plait/plain",
            f"<= {LINEAR} (linear)",
            plait_fit <= LINEAR,
            {"note": "1 = linear in steps, 2 = quadratic", "rounds": list(sizes.storage_rounds)},
        ),
    ]
    return rows, {side: {str(k): v for k, v in data.items()} for side, data in raw.items()}


def _usage(db: Path, empty: Path, steps: int) -> dict:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoints = [
            n
            for (n,) in conn.execute(
                "SELECT length(checkpoint) + length(metadata) FROM checkpoints ORDER BY checkpoint_id"
            )
        ]
        (writes,) = conn.execute("SELECT COALESCE(SUM(length(value)), 0) FROM writes").fetchone()
    with sqlite3.connect(empty) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {
        "steps": steps,
        "disk": db.stat().st_size - empty.stat().st_size,
        "payload": sum(checkpoints) + writes,
        "checkpoints": len(checkpoints),
        "first_checkpoint": checkpoints[0],
        "last_checkpoint": checkpoints[-1],
    }


def _exponent(points: dict[int, dict]) -> float:
    """Least-squares slope of log(payload bytes) against log(supersteps)."""
    xs = [math.log(p["steps"]) for p in points.values()]
    ys = [math.log(p["payload"]) for p in points.values()]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )

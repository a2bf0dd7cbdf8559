"""5. Storage: bytes on disk per thread, and how they grow with steps.

A review loop that is never approved runs R rounds (2R + 3 supersteps) for a few R; each
thread gets a database file of its own, so its size on disk (after a WAL checkpoint, less the
size of the same file with no thread in it) is that thread's. The growth exponent is the slope
of log(bytes) against log(supersteps): 1 is linear, 2 quadratic. The checkpoint and write
payloads (the blobs LangGraph stores) are counted too, and the first and last checkpoint's size,
which says why: a checkpoint that grows with the step means total storage grows faster than the
steps.

A debate with the demo model runs 1, 2, 4 and 8 rounds the same way (one file per thread). Its
row is the same exponent against rounds (a round is two supersteps; against 2R + 3 steps the
fixed start and judge would bend so short a series), with the review loop's as the baseline.
Its note gives the newest checkpoint's bytes (the latest checkpoint blob plus its writes) at
each length, and their growth per round between the two longest: a state that keeps every
round's arguments adds them to every checkpoint, so the newest one grows by a round's arguments
a round.
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
DEBATE_ROUNDS = (1, 2, 4, 8)  # the demo model is instant: the same lengths in quick runs


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
        raw["debate"] = {}
        for rounds in DEBATE_ROUNDS:
            db = folder / f"debate-{rounds}.db"
            options = {"rounds": rounds}
            await paths.run_plait("debate", "storage debate", db=db, options=options, model="demo")
            raw["debate"][rounds] = _usage(db, empty_plait, rounds)
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
    debate_fit = _exponent(raw["debate"])
    newest = {r: p["newest_checkpoint"] for r, p in raw["debate"].items()}
    # Between the two longest runs: by then the state's log window (10 envelopes) is full.
    (short, before), (long, after) = sorted(newest.items())[-2:]
    slope = (after - before) / (long - short)
    shown = ", ".join(f"{r}: {b / 1024:.1f}" for r, b in newest.items())
    rows.append(
        Row(
            "debate storage growth exponent vs rounds",
            debate_fit,
            plait_fit,
            debate_fit / plait_fit,
            "exponent",
            "plait review loop",
            "debate/review",
            f"<= {LINEAR} (linear)",
            debate_fit <= LINEAR,
            {
                "note": f"newest checkpoint by rounds {shown} KB; "
                f"{slope / 1024:+.2f} KB a round from {short} to {long}",
                "newest_checkpoint_bytes_per_round": slope,
                "rounds": list(DEBATE_ROUNDS),
            },
        )
    )
    return rows, {side: {str(k): v for k, v in data.items()} for side, data in raw.items()}


def _usage(db: Path, empty: Path, steps: int) -> dict:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoints = list(
            conn.execute(
                "SELECT checkpoint_id, length(checkpoint) + length(metadata) FROM checkpoints "
                "WHERE checkpoint_ns = '' ORDER BY checkpoint_id"
            )
        )
        (writes,) = conn.execute("SELECT COALESCE(SUM(length(value)), 0) FROM writes").fetchone()
        (newest_writes,) = conn.execute(
            "SELECT COALESCE(SUM(length(value)), 0) FROM writes WHERE checkpoint_id = ?",
            (checkpoints[-1][0],),
        ).fetchone()
    with sqlite3.connect(empty) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    sizes = [n for _, n in checkpoints]
    return {
        "steps": steps,
        "disk": db.stat().st_size - empty.stat().st_size,
        "payload": sum(sizes) + writes,
        "checkpoints": len(sizes),
        "first_checkpoint": sizes[0],
        "last_checkpoint": sizes[-1],
        "newest_checkpoint": sizes[-1] + newest_writes,
    }


def _exponent(points: dict[int, dict]) -> float:
    """Least-squares slope of log(payload bytes) against log(supersteps)."""
    xs = [math.log(p["steps"]) for p in points.values()]
    ys = [math.log(p["payload"]) for p in points.values()]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )

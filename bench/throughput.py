"""4. Throughput: M threads of a 4-superstep workflow at once, in one process, on one durable
SQLite file.

The workflow is the prebuilt pipeline with four stages (one model call and one superstep
each), run through ``plait.run`` as a Python user would (``asyncio.gather`` of M runs). The
physical limit is every thread taking exactly its critical path (4 x latency), all M at once:
M / critical path workflows per second.
"""

from __future__ import annotations

import asyncio
import time

from bench import paths
from bench.core import Row, Sizes, percentile, scratch
from bench.model import BenchModel, bench_task

STAGES = ["extract", "transform", "format", "polish"]
GOAL_M, GOAL_RATE = 1000, 150.0


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    rows, raw = [], {}
    critical = len(STAGES) * sizes.throughput_latency
    options = {"stages": STAGES}
    with scratch() as folder:
        db = folder / "throughput.db"
        model = BenchModel()
        await paths.run_plait(
            "pipeline", bench_task("warm-up"), db=db, options=options, model=model
        )
        for m in sizes.throughput_ms:
            task = bench_task("throughput", lat=sizes.throughput_latency, size=200)

            start = time.perf_counter()
            latencies = await asyncio.gather(
                *(_one(task, db, options, model, start) for _ in range(m))
            )
            wall = time.perf_counter() - start
            rate, limit = m / wall, m / critical
            p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
            goal = m == GOAL_M
            data = {
                "m": m,
                "wall_s": wall,
                "critical_path_s": critical,
                "p50_s": p50,
                "p95_s": p95,
                "workflows_per_s": rate,
                "limit_per_s": limit,
            }
            raw[str(m)] = data
            rows.append(
                Row(
                    f"throughput M={m}",
                    rate,
                    limit,
                    rate / limit,
                    "workflows/s",
                    "limit M/critical",
                    "plait/limit",
                    f">= {GOAL_RATE:g}/s" if goal else "",
                    (rate >= GOAL_RATE) if goal else None,
                    {
                        "note": f"p50 {p50 / critical:.2f}x, p95 {p95 / critical:.2f}x critical path",
                        **data,
                    },
                )
            )
    return rows, raw


async def _one(task: str, db, options: dict, model: BenchModel, start: float) -> float:
    """One thread; its latency counts from when all M were started."""
    outcome = await paths.run_plait("pipeline", task, db=db, options=options, model=model)
    assert outcome.status == "done", outcome
    return time.perf_counter() - start

"""3. Durable overhead: wall time with the SQLite checkpointer minus without, per superstep and
per ``Send`` branch.

A zero-latency model, and the difference of differences, so fixed costs cancel: per superstep,
the review loop at two lengths (each review round adds a review and a revise superstep); per
branch, the orchestrator at two widths. plait: its runner's streaming loop with its SQLite saver
(``durability="sync"``, as ``plait run``) or no checkpointer. Plain: ``graph.invoke`` with the
docs' ``SqliteSaver`` defaults or none. The four runs alternate and the fastest sample of each
is kept (noise on a busy machine only adds time).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from bench import baselines, paths
from bench.core import Row, Sizes, scratch, timed
from bench.model import BenchModel, bench_task
from plait.checkpoints.sqlite import open_database

GOAL_MS = 1.5


def review_case(rounds: int) -> tuple[str, dict, int]:
    # research, outline, write, `rounds` reviews, `rounds - 1` revisions, finalize
    return bench_task("durable review", approve=0), {"max_iterations": rounds}, 2 * rounds + 3


def fanout_case(n: int) -> tuple[str, dict, int]:
    return bench_task("durable fan-out", n=n), paths.orchestrator_options(n), n


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    model = BenchModel()
    runs = 2 if sizes.quick else 5
    cases = {
        "superstep": ("review", [review_case(r) for r in sizes.durable_rounds]),
        "Send branch": ("orchestrator", [fanout_case(n) for n in sizes.durable_branches]),
    }
    rows, raw = [], {}
    with scratch() as folder:
        async with open_database(folder / "plait.db") as database:
            with baselines.sqlite_saver(str(folder / "plain.db")) as plain_saver:
                for unit, (kind, points) in cases.items():
                    timings = {}
                    for task, options, count in points:
                        timings[count] = await _time_point(
                            kind,
                            task,
                            options,
                            model,
                            database.saver,
                            plain_saver,
                            runs,
                            sizes.durable_reps,
                        )
                    rows.append(_row(unit, timings))
                    raw[unit] = {str(k): v for k, v in timings.items()}
    return rows, raw


async def _time_point(kind, task, options, model, saver, plain_saver, runs, reps) -> dict:
    plait_apps = {d: paths.compile_plait(kind, options, saver if d else None) for d in (0, 1)}
    plain_opts = {"max_iterations": options["max_iterations"]} if kind == "review" else {}
    plain_apps = {
        d: paths.compile_plain(kind, model, plain_saver if d else None, **plain_opts)
        for d in (0, 1)
    }
    samples: dict[str, list[float]] = {k: [] for k in ("plait0", "plait1", "plain0", "plain1")}
    for durable in (0, 1):  # warm-up
        await paths.stream_plait(plait_apps[durable], task, model, durable=bool(durable))
        paths.invoke_plain(plain_apps[durable], task)
    for _ in range(reps):
        for durable in (0, 1):
            samples[f"plait{durable}"].append(
                await _atime(
                    lambda d=durable: paths.stream_plait(
                        plait_apps[d], task, model, durable=bool(d)
                    ),
                    runs,
                )
            )
            samples[f"plain{durable}"].append(
                timed(
                    lambda d=durable: [paths.invoke_plain(plain_apps[d], task) for _ in range(runs)]
                )
                / runs
            )
    return {k: min(v) for k, v in samples.items()} | {"samples": samples}


async def _atime(make: Callable[[], Awaitable], runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        await make()
    return (time.perf_counter() - start) / runs


def _row(unit: str, timings: dict[int, dict]) -> Row:
    (small, low), (big, high) = sorted(timings.items())

    def per_unit(side: str) -> float:
        delta_big = high[f"{side}1"] - high[f"{side}0"]
        delta_small = low[f"{side}1"] - low[f"{side}0"]
        return (delta_big - delta_small) / (big - small)

    plait_ms, plain_ms = per_unit("plait") * 1e3, per_unit("plain") * 1e3
    plait_ratio = high["plait1"] / high["plait0"]
    plain_ratio = high["plain1"] / high["plain0"]
    goal = unit == "superstep"
    extra = {
        "note": f"with/without at {big}: plait {plait_ratio:.2f}x, plain {plain_ratio:.2f}x",
        "plait_with_without": plait_ratio,
        "plain_with_without": plain_ratio,
        "plait_per_run_ms": {
            k: {s: v[s] * 1e3 for s in ("plait0", "plait1")} for k, v in timings.items()
        },
        "plain_per_run_ms": {
            k: {s: v[s] * 1e3 for s in ("plain0", "plain1")} for k, v in timings.items()
        },
    }
    return Row(
        f"durable overhead per {unit}",
        plait_ms,
        plain_ms,
        plait_ms / plain_ms if abs(plain_ms) > 1e-6 else 0.0,
        "ms",
        "plain LangGraph",
        "plait/plain",
        f"<= {GOAL_MS} ms" if goal else "",
        (plait_ms <= GOAL_MS) if goal else None,
        extra,
    )

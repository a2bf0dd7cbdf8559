"""Profile plait's side of a measurement: ``python -m bench.profile NAME [--top N]``.

cProfile (standard library, nothing to install) over one scenario, printed twice: by own time
(where the CPU goes) and by cumulative time (which call paths hold it). BENCHMARKS.md quotes
these for each goal that is not met.

Scenarios: ``overhead`` (the review loop in memory, zero latency, 200 runs), ``durable`` (the
same with plait's SQLite saver), ``fanout`` (256 workers, 200 ms, in-process, branch cap lifted),
``fanout-http`` (the same through ``ChatOpenAI`` and the loopback server), ``throughput`` (1000
pipeline threads at once on one SQLite file).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from collections.abc import Awaitable, Callable

from bench import paths
from bench.core import scratch
from bench.model import BenchModel, bench_task
from bench.server import loopback_process
from bench.throughput import STAGES
from plait.checkpoints.sqlite import open_database


async def _stream(durable: bool, runs: int) -> Callable[[], Awaitable[None]]:
    model = BenchModel()
    task = bench_task("profile review", approve=3)
    options = {"max_iterations": 3}

    async def go() -> None:
        with scratch() as folder:
            async with open_database(folder / "p.db") as database:
                app = paths.compile_plait("review", options, database.saver if durable else None)
                for _ in range(runs):
                    await paths.stream_plait(app, task, model, durable=durable)

    return go


async def _fanout(http: bool) -> Callable[[], Awaitable[None]]:
    n = 256
    task = bench_task("profile fan-out", n=n, lat=0.2)
    options = {**paths.orchestrator_options(n), "max_concurrency": n}

    async def go() -> None:
        with scratch() as folder:
            if http:
                with loopback_process() as url:
                    await paths.run_plait(
                        "orchestrator",
                        bench_task("warm-up", n=4),
                        db=folder / "w.db",
                        options=paths.orchestrator_options(4),
                        base_url=url,
                    )
                    await paths.run_plait(
                        "orchestrator", task, db=folder / "p.db", options=options, base_url=url
                    )
            else:
                await paths.run_plait(
                    "orchestrator", task, db=folder / "p.db", options=options, model=BenchModel()
                )

    return go


async def _throughput() -> Callable[[], Awaitable[None]]:
    task = bench_task("profile throughput", lat=0.2, size=200)
    options = {"stages": STAGES}
    model = BenchModel()

    async def go() -> None:
        with scratch() as folder:
            db = folder / "p.db"  # created first: concurrent first opens race on migrations
            await paths.run_plait("pipeline", task, db=db, options=options, model=model)
            await asyncio.gather(
                *(
                    paths.run_plait("pipeline", task, db=db, options=options, model=model)
                    for _ in range(1000)
                )
            )

    return go


SCENARIOS = {
    "overhead": lambda: _stream(False, 200),
    "durable": lambda: _stream(True, 100),
    "fanout": lambda: _fanout(False),
    "fanout-http": lambda: _fanout(True),
    "throughput": _throughput,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only entries whose file:function matches")
    args = parser.parse_args()

    async def run() -> float:
        go = await SCENARIOS[args.scenario]()
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        await go()
        profiler.disable()
        wall = time.perf_counter() - start
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
            stats.print_stats(*([args.match] if args.match else []), args.top)
            print(f"=== {args.scenario}: top {args.top} by {order} ===")
            print(out.getvalue().split("\n\n", 1)[-1].strip())
        return wall

    print(f"wall {asyncio.run(run()):.2f} s (under the profiler)")


if __name__ == "__main__":
    main()

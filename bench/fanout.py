"""2. Fan-out efficiency: critical path / wall time for the orchestrator with N workers.

The critical path is plan + slowest worker + synthesis (the model latency alone, zero framework
time). Latency is fixed, or heavy-tailed (lognormal around the same median, the same draw for
the same worker on both sides). Each side runs the whole thread as users run it: plait through
``plait.run`` (its default ``max_concurrency``); plain LangGraph with ``SqliteSaver`` and
``graph.invoke``. In-process with ``BenchModel``, and over HTTP with the real ``ChatOpenAI``
client against ``LoopbackServer`` (in its own process); there, the bare ``AsyncOpenAI`` client
sending the same N worker requests at once, with no framework, shows what the HTTP client and
server alone take on this machine. Each plait figure is the fastest of two runs (one with
``--quick``).
"""

from __future__ import annotations

import asyncio
import time

from bench import paths
from bench.core import Row, Sizes, scratch, timed
from bench.model import (
    WORKER_ROLES,
    BenchModel,
    bench_task,
    latency,
    orchestrator_critical_path,
    params_of,
)
from bench.server import loopback_process
from plait.nodes.prompts import ROLE_PROMPTS

GOALS = {64: 0.95, 256: 0.90}


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    rows, raw = [], {}
    with scratch() as folder, loopback_process() as url:
        from langchain_openai import ChatOpenAI

        transports = {
            "in-process": (BenchModel(), None),
            "loopback HTTP": (ChatOpenAI(model="bench", base_url=url, api_key="not-needed"), url),
        }
        for transport, (plain_model, base_url) in transports.items():
            await _warm_up(folder, plain_model, base_url)
            for dist in ("fixed", "heavy"):
                for n in sizes.fanout_ns:
                    row, data = await _one(folder, transport, plain_model, base_url, dist, n, sizes)
                    rows.append(row)
                    raw[row.name] = data
    return rows, raw


async def _warm_up(folder, plain_model, base_url) -> None:
    # Imports, client creation and the first connections are start-up, not fan-out.
    task = bench_task("warm-up", n=4)
    await paths.run_plait(
        "orchestrator",
        task,
        db=folder / "plait.db",
        options=paths.orchestrator_options(4),
        model=None if base_url else BenchModel(),
        base_url=base_url,
    )
    paths.run_plain("orchestrator", task, plain_model, db=folder / "plain.db")


async def _plait_wall(folder, task, options, base_url, reps: int) -> float:
    """The fastest of ``reps`` whole runs (noise on a busy machine only adds time)."""
    walls = []
    for _ in range(reps):
        start = time.perf_counter()
        outcome = await paths.run_plait(
            "orchestrator",
            task,
            db=folder / "plait.db",
            options=options,
            base_url=base_url,
            model=None if base_url else BenchModel(),
        )
        walls.append(time.perf_counter() - start)
        assert outcome.status == "done", outcome
    return min(walls)


async def http_floor(url: str, task: str, n: int) -> float:
    """N worker requests at once from the bare ``AsyncOpenAI`` client, no framework at all.

    What this machine's HTTP client and the loopback server take for the fan-out phase alone
    (their CPU competes for the same 2 cores); the critical path assumes 0.
    """
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="not-needed", max_retries=0, timeout=120)

    async def one(i: int) -> None:
        content = f"Task: {task}\n\nYour subtask:\npart {i} of {n}: cover aspect {i} of the task"
        await client.chat.completions.create(
            model="bench",
            messages=[
                {"role": "system", "content": ROLE_PROMPTS[WORKER_ROLES[(i - 1) % 4]]},
                {"role": "user", "content": content},
            ],
        )

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(1, n + 1)))
    seconds = time.perf_counter() - start
    await client.close()
    return seconds


async def _one(folder, transport, plain_model, base_url, dist, n, sizes):
    task = bench_task("fan-out", n=n, lat=sizes.fanout_latency, dist=dist, seed=n)
    params = params_of([task])
    critical = orchestrator_critical_path(params)
    options = paths.orchestrator_options(n)
    reps = 1 if sizes.quick else 2
    wall = await _plait_wall(folder, task, options, base_url, reps)
    # The same run with the branch cap lifted: what the cap costs, and what is left without it.
    uncapped = await _plait_wall(folder, task, {**options, "max_concurrency": n}, base_url, reps)
    data = {
        "n": n,
        "dist": dist,
        "transport": transport,
        "critical_path_s": critical,
        "plait_wall_s": wall,
        "plait_uncapped_wall_s": uncapped,
    }
    note = f"max_concurrency={n}: {critical / uncapped:.2f}"
    if base_url:
        floor = await http_floor(base_url, task, n)
        slowest = max(latency(params, f"worker:{i}") for i in range(1, n + 1))
        ceiling = critical / (critical - slowest + floor)  # zero framework, this HTTP stack
        data |= {"http_floor_s": floor, "http_slowest_worker_s": slowest, "http_ceiling": ceiling}
        note += f"; bare client: workers {floor:.2f} s vs {slowest:.2f} s (ceiling {ceiling:.2f})"
    if n <= sizes.fanout_plain_max_n:
        plain = timed(
            lambda: paths.run_plain("orchestrator", task, plain_model, db=folder / "plain.db")
        )
        data["plain_wall_s"] = plain
        note += f"; plain LangGraph: {critical / plain:.2f}"
    label = f"{sizes.fanout_latency * 1e3:.0f} ms" + (" heavy-tailed" if dist == "heavy" else "")
    goal = GOALS.get(n)
    ratio = critical / wall
    row = Row(
        f"fan-out N={n}, {label}, {transport}",
        wall,
        critical,
        ratio,
        "s wall",
        "critical path",
        "critical/wall",
        f">= {goal}" if goal else "",
        (ratio >= goal) if goal else None,
        {"note": note, **data},
    )
    return row, data

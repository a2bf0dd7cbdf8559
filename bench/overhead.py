"""1. Per-call overhead: framework time per model call with a zero-latency model.

Each side runs the review loop (3 reviews, 8 calls) and the orchestrator (8 workers, 10 calls)
many times; wall time per model call, less what the model call alone costs (``ainvoke`` for
plait, ``invoke`` for plain, timed on the same model), is the framework's time per call.
Samples alternate between the sides and the fastest sample of each is kept: on a busy machine,
noise only ever adds time, so the minimum is the best estimate of the cost itself.
In memory: no checkpointer on either side (the framework alone). Durable: each side's whole
run as users run it (``plait.run`` on its SQLite file; the docs' ``SqliteSaver``).
"""

from __future__ import annotations

import time

from langchain_core.messages import HumanMessage, SystemMessage

from bench import paths
from bench.core import Row, Sizes, scratch, timed
from bench.model import BenchModel, bench_task

GOAL = 1.1
WORKFLOWS = {
    "review": (bench_task("overhead review", approve=3), {"max_iterations": 3}, 8),
    "orchestrator": (bench_task("overhead fan-out", n=8), paths.orchestrator_options(8), 10),
}


async def model_alone(model: BenchModel, calls: int) -> tuple[float, float]:
    """Seconds per call of the model by itself: (async ``ainvoke``, sync ``invoke``)."""
    messages = [SystemMessage("You are the writer. Write."), HumanMessage(bench_task("x"))]
    async_calls, sync_calls = [], []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            await model.ainvoke(messages)
        async_calls.append((time.perf_counter() - start) / calls)
        sync_calls.append(timed(lambda: [model.invoke(messages) for _ in range(calls)]) / calls)
    return min(async_calls), min(sync_calls)


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    model = BenchModel()
    runs = 3 if sizes.quick else 10  # runs per timed sample
    alone_async, alone_sync = await model_alone(model, 20 if sizes.quick else 200)
    rows, raw = (
        [],
        {"model_alone_async_ms": alone_async * 1e3, "model_alone_sync_ms": alone_sync * 1e3},
    )
    for kind, (task, options, calls) in WORKFLOWS.items():
        plait_app = paths.compile_plait(kind, options, None)
        plain_app = paths.compile_plain(
            kind, model, None, **({"max_iterations": 3} if kind == "review" else {})
        )
        await paths.stream_plait(plait_app, task, model, durable=False)  # warm both up
        paths.invoke_plain(plain_app, task)
        plait_t, plain_t = [], []
        for _ in range(sizes.overhead_reps):  # interleaved, so load changes hit both sides
            start = time.perf_counter()
            for _ in range(runs):
                await paths.stream_plait(plait_app, task, model, durable=False)
            plait_t.append((time.perf_counter() - start) / (runs * calls))
            plain_t.append(
                timed(
                    lambda app=plain_app, task=task: [
                        paths.invoke_plain(app, task) for _ in range(runs)
                    ]
                )
                / (runs * calls)
            )
        rows.append(
            _row(
                f"per-call overhead, {kind}, in memory",
                min(plait_t),
                min(plain_t),
                alone_async,
                alone_sync,
            )
        )
        raw[f"{kind}_memory"] = {"plait_s_per_call": plait_t, "plain_s_per_call": plain_t}

        plait_t, plain_t = [], []
        with scratch() as folder:
            durable_kwargs = {"max_iterations": 3} if kind == "review" else {}
            for _ in range(sizes.overhead_reps):
                start = time.perf_counter()
                for _ in range(runs):
                    await paths.run_plait(
                        kind, task, db=folder / "plait.db", options=options, model=model
                    )
                plait_t.append((time.perf_counter() - start) / (runs * calls))
                plain_t.append(
                    timed(
                        lambda kind=kind, task=task, kw=durable_kwargs: [
                            paths.run_plain(kind, task, model, db=folder / "plain.db", **kw)
                            for _ in range(runs)
                        ]
                    )
                    / (runs * calls)
                )
        rows.append(
            _row(
                f"per-call overhead, {kind}, durable run",
                min(plait_t),
                min(plain_t),
                alone_async,
                alone_sync,
            )
        )
        raw[f"{kind}_durable"] = {"plait_s_per_call": plait_t, "plain_s_per_call": plain_t}
    return rows, raw


def _row(
    name: str, plait_call: float, plain_call: float, alone_async: float, alone_sync: float
) -> Row:
    plait_fw = max(plait_call - alone_async, 1e-9)
    plain_fw = max(plain_call - alone_sync, 1e-9)
    ratio = plait_fw / plain_fw
    return Row(
        name,
        plait_fw * 1e3,
        plain_fw * 1e3,
        ratio,
        "ms/call",
        "plain LangGraph",
        "plait/plain",
        f"<= {GOAL}x",
        ratio <= GOAL,
        {
            "note": f"wall per call {plait_call * 1e3:.3f} vs {plain_call * 1e3:.3f} ms, less the "
            f"model alone ({alone_async * 1e3:.3f} async, {alone_sync * 1e3:.3f} sync)",
            "plait_wall_ms_per_call": plait_call * 1e3,
            "plain_wall_ms_per_call": plain_call * 1e3,
        },
    )

"""6. Tokens: input tokens sent per useful output token, plait against plain LangGraph.

The same replies on both sides (the review loop approving on its third review; the orchestrator
with 8 workers), counted by the model itself (four characters a token) from exactly what each
framework sent. Useful output is every token the agents produced, the same on both sides, so the
ratio of the ratios is the ratio of input tokens. The final results are checked to be equal.
"""

from __future__ import annotations

from bench import baselines, paths
from bench.core import Row, Sizes, scratch
from bench.model import BenchModel, bench_task

CASES = {
    "review (3 iterations)": (
        "review",
        bench_task("tokens review", approve=3),
        {"max_iterations": 3},
    ),
    "orchestrator (8 workers)": (
        "orchestrator",
        bench_task("tokens fan-out", n=8),
        paths.orchestrator_options(8),
    ),
}


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    rows, raw = [], {}
    with scratch() as folder:
        for label, (kind, task, options) in CASES.items():
            plait_model, plain_model = BenchModel(), BenchModel()
            outcome = await paths.run_plait(
                kind, task, db=folder / "plait.db", options=options, model=plait_model
            )
            plain_opts = {"max_iterations": 3} if kind == "review" else {}
            values = paths.run_plain(kind, task, plain_model, db=None, **plain_opts)
            same = outcome.result == baselines.result_of(kind, values)
            a, b = plait_model.tally, plain_model.tally
            plait_per, plain_per = (
                a.input_tokens / a.output_tokens,
                b.input_tokens / b.output_tokens,
            )
            data = {"plait": vars_of(a), "plain": vars_of(b), "same_result": same}
            raw[label] = data
            rows.append(
                Row(
                    f"input tokens per output token, {label}",
                    plait_per,
                    plain_per,
                    plait_per / plain_per,
                    "in/out",
                    "plain LangGraph",
                    "plait/plain",
                    "< 1",
                    plait_per < plain_per and same,
                    {
                        "note": f"input {a.input_tokens} vs {b.input_tokens}; output {a.output_tokens}"
                        f" vs {b.output_tokens}; same result: {same}",
                        **data,
                    },
                )
            )
    return rows, raw


def vars_of(tally) -> dict:
    return {
        "calls": tally.calls,
        "input_tokens": tally.input_tokens,
        "output_tokens": tally.output_tokens,
    }

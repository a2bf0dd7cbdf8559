"""Map-reduce: split the input into items -> one mapper per item, in parallel -> reduce.

Items come from the run's ``input`` (``plait run map-reduce TASK --input FILE``): a JSON array,
non-empty lines, or chunks of a document; with no input, the task text is the document. Each
mapper is sent (with ``Send``) only its own item. When the mapped outputs would not fit one
reducer call (``reduce_chars``), they are reduced in levels: batches that fit are reduced in
parallel, then their outputs, until one batch remains; ``levels`` records how many it took.
An item whose mapper fails is recorded in ``errors``; the final reducer is told which items are
missing and the result lists them. Items are numbered from 1, and every output merges by its
key (item number, or ``level.batch``), so a resumed run re-runs only what had not finished.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import Field
from typing_extensions import TypedDict

from plait.errors import PlaitError, UsageError
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, run_context, user_prompt
from plait.nodes.kit import node, record_failure, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

# With no --input the task text is the document, so the agents need an instruction of their own.
DOCUMENT_INSTRUCTION = "Summarize the document: its main points, facts and conclusions."

PROMPTS = {
    "mapper": "You are the mapper. Do the task for the one item you are given, and only for "
    "it. Be complete but concise: your output is combined with the other items' outputs.",
    "reducer": "You are the reducer. Combine the outputs you are given into one. In a partial "
    "step keep every finding and which item it came from, since another reducer combines your "
    "output with others; in the final step write the answer to the task, and say which items "
    "are missing if any are.",
}


class MapReduceState(CommonState, total=False):
    instruction: str
    items: list[str]
    mapped: Annotated[dict[str, str], merge_by_key]  # item number -> mapper output
    partials: Annotated[dict[str, str], merge_by_key]  # "level.batch" -> reducer output
    reduce_plan: list[list[list[int]]]  # per level, its batches (indices into its inputs)
    levels: int
    missing: list[int]
    retry_items: list[str]  # failed items sent to the mappers again (see collect)
    stop_reason: str


class MapInput(TypedDict):
    """What ``Send`` carries to one mapper: its own item, not a copy of the state."""

    instruction: str
    number: int
    count: int
    item: str


def _item_number(payload: MapInput) -> str:
    return str(payload["number"])


class ReduceInput(TypedDict):
    """What ``Send`` carries to one reducer call: its batch of outputs."""

    instruction: str
    level: int
    batch: int
    batches: int
    entries: list[str]
    missing: str


def split_document(text: str, chunk_size: int) -> list[str]:
    """Cut ``text`` into chunks of at most ``chunk_size`` characters.

    Cuts fall at paragraph breaks where possible, else at line breaks, else between words;
    only a word longer than a chunk is cut inside.
    """
    chunks = _pack(text.strip(), chunk_size, ("\n\n", "\n", " "))
    return [chunk for chunk in chunks if chunk.strip()]


def _pack(text: str, size: int, separators: Sequence[str]) -> list[str]:
    if len(text) <= size:
        return [text]
    if not separators:
        return [text[i : i + size] for i in range(0, len(text), size)]
    sep = separators[0]
    pieces = [
        piece
        for part in text.split(sep)
        if part.strip()
        for piece in _pack(part, size, separators[1:])
    ]
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current}{sep}{piece}" if current else piece
        if len(joined) <= size:
            current = joined
        else:
            chunks.append(current)
            current = piece
    return [*chunks, current] if current else chunks


def parse_items(text: str, mode: str, chunk_size: int) -> list[str]:
    """The items in an input text.

    ``json``: a JSON array (strings as they are, anything else as JSON text); ``lines``: the
    non-empty lines; ``document``: chunks of ``chunk_size`` characters; ``auto``: a JSON array
    if the text is one, else lines.

    Raises:
        UsageError: ``json`` mode and the text is not a JSON array.
    """
    if mode == "document":
        return split_document(text, chunk_size)
    if mode in ("json", "auto") and (mode == "json" or text.lstrip().startswith("[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if mode == "json":
                raise UsageError(f"the input is not valid JSON: {exc}") from None
            data = None
        if isinstance(data, list):
            return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in data]
        if mode == "json":
            raise UsageError(f"the input must be a JSON array, got a JSON {type(data).__name__}")
    return [line.strip() for line in text.splitlines() if line.strip()]


def plan_batches(sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Group consecutive texts (by index) into batches whose sizes add up to at most ``limit``.

    A batch takes at least two texts while two remain, even past the limit, so every level has
    fewer outputs than the one before and the reduction always ends.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, size in enumerate(sizes):
        if len(current) >= 2 and used + size > limit:
            batches.append(current)
            current, used = [], 0
        current.append(index)
        used += size
    return [*batches, current] if current else batches


@validated
def create_map_reduce_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    mode: Annotated[
        Literal["auto", "lines", "json", "document"],
        Field(
            description="how --input becomes items: auto (a JSON array, else lines), lines, "
            "json, or document (chunks)"
        ),
    ] = "auto",
    chunk_size: Annotated[
        int, Field(ge=1, description="most characters in a document chunk")
    ] = 4000,
    reduce_chars: Annotated[
        int,
        Field(
            ge=1,
            description="most characters of outputs per reducer call; more are reduced in levels",
        ),
    ] = 12000,
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[MapReduceState, PlaitContext]:
    """One mapper per item (lines, JSON array or document chunks), then reduce in levels.

    Args:
        prompts: Role instructions to override (mapper, reducer).

    Example:
        ``app = create_map_reduce_graph(mode="document", chunk_size=2000).compile()``
    """

    async def split(state: MapReduceState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        if "input" in state:
            instruction, items = state["task"], parse_items(state["input"], mode, chunk_size)
        else:
            instruction, items = DOCUMENT_INSTRUCTION, split_document(state["task"], chunk_size)
        if not items:
            raise UsageError(f"the input has no items to map (mode {mode})")
        # A large input takes a while to fan out and checkpoint: say how much is coming.
        source = "input" if "input" in state else "task"
        run_context(runtime).notice(f"split the {source} into {len(items):,} items to map")
        # The items now hold the input; keeping the raw text too would store it twice in
        # every later checkpoint.
        return {"instruction": instruction, "items": items, "input": ""}

    async def dispatch_items(state: MapReduceState) -> list[Send]:
        count = len(state["items"])
        return [
            Send(
                "mapper",
                MapInput(instruction=state["instruction"], number=number, count=count, item=item),
            )
            for number, item in enumerate(state["items"], 1)
        ]

    # No fail policy here: a failed item is recorded and the final reducer names it.
    @node(
        branch=_item_number,
        on_error=record_failure("reducer", sender="mapper"),
    )
    async def mapper(payload: MapInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        key = str(payload["number"])
        item = f"(item {key} of {payload['count']})\n{payload['item']}"
        reply = await ask(
            runtime,
            "mapper",
            role_prompt("mapper", prompts, PROMPTS),
            user_prompt(payload["instruction"], your_item=item),
        )
        say("mapper", "reducer", "result", reply.value, correlation_id=key)
        return {"mapped": {key: reply.value}}

    async def collect(state: MapReduceState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        plan = state.get("reduce_plan", [])
        if plan and len(plan[-1]) == 1:
            return {}  # the last level was a single batch: its output is the answer
        entries = _level_inputs(state, len(plan))
        if not entries:
            # Every item failed (an endpoint down, say). Their failures are recorded, so a
            # resume alone would not retry them: each run (the first, and every resume) sends
            # them to the mappers once more, then stops as failed and resumable.
            context = run_context(runtime)
            if "map-reduce" in context.retried:
                raise PlaitError(
                    f"every item failed, so there is nothing to reduce; `plait resume` retries "
                    f"them; errors: {_failures(state)}"
                )
            context.retried.add("map-reduce")
            return {"retry_items": sorted(state.get("errors", {}), key=int)}
        batches = plan_batches([len(e) + 2 for e in entries], reduce_chars)
        return {"reduce_plan": [*plan, batches], "levels": len(plan) + 1, "retry_items": []}

    async def dispatch_batches(state: MapReduceState) -> list[Send] | str:
        if state.get("retry_items"):
            count = len(state["items"])
            return [
                Send(
                    "mapper",
                    MapInput(
                        instruction=state["instruction"],
                        number=int(key),
                        count=count,
                        item=state["items"][int(key) - 1],
                    ),
                )
                for key in state["retry_items"]
            ]
        plan, level = state["reduce_plan"], state["levels"]
        if f"{level}.0" in state.get("partials", {}) and len(plan[-1]) == 1:
            return "finish"
        entries = _level_inputs(state, level - 1)
        missing = "" if len(plan[-1]) > 1 else _failures(state)
        return [
            Send(
                "reducer",
                ReduceInput(
                    instruction=state["instruction"],
                    level=level,
                    batch=b,
                    batches=len(plan[-1]),
                    missing=missing,
                    entries=[entries[i] for i in batch],
                ),
            )
            for b, batch in enumerate(plan[-1])
        ]

    @node
    async def reducer(payload: ReduceInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        level, batch, batches = payload["level"], payload["batch"], payload["batches"]
        step = (
            f"final (level {level})"
            if batches == 1
            else f"partial (level {level}, batch {batch + 1} of {batches})"
        )
        sections = {"reduce_step": step, "outputs_to_combine": "\n\n".join(payload["entries"])}
        if payload["missing"]:
            sections["missing_items"] = payload["missing"]
        reply = await ask(
            runtime,
            "reducer",
            role_prompt("reducer", prompts, PROMPTS),
            user_prompt(payload["instruction"], **sections),
        )
        key, receiver = f"{level}.{batch}", "reducer" if batches > 1 else "user"
        say("reducer", receiver, "result", reply.value, correlation_id=key)
        return {"partials": {key: reply.value}}

    async def finish(state: MapReduceState) -> dict[str, Any]:
        level, errors = state["levels"], state.get("errors", {})
        missing = sorted(int(key) for key in errors if key not in state.get("mapped", {}))
        note = f"\n\nMissing items (their mapper failed): {_failures(state)}" if missing else ""
        mapped, total = len(state.get("mapped", {})), len(state["items"])
        return {
            "result": state["partials"][f"{level}.0"] + note,
            "missing": missing,
            "stop_reason": f"one output left: {mapped} of {total} item outputs "
            f"reduced in {level} level(s)",
        }

    builder = StateGraph(MapReduceState, context_schema=PlaitContext)
    builder.add_node("split", split)
    builder.add_node("mapper", mapper, input_schema=MapInput)
    builder.add_node("collect", collect)
    builder.add_node("reducer", reducer, input_schema=ReduceInput)
    builder.add_node("finish", finish)
    builder.add_edge(START, "split")
    builder.add_conditional_edges("split", dispatch_items, ["mapper"])
    builder.add_edge("mapper", "collect")
    builder.add_conditional_edges("collect", dispatch_batches, ["reducer", "finish", "mapper"])
    builder.add_edge("reducer", "collect")
    builder.add_edge("finish", END)
    return builder


def _level_inputs(state: MapReduceState, level: int) -> list[str]:
    # Level 0 is the mapped items; level k > 0 is the outputs of level k's reducer calls.
    if level == 0:
        mapped = state.get("mapped", {})
        return [f"[item {key}]\n{mapped[key]}" for key in sorted(mapped, key=int)]
    batches = len(state["reduce_plan"][level - 1])
    return [f"[part {b + 1}]\n{state['partials'][f'{level}.{b}']}" for b in range(batches)]


def _failures(state: MapReduceState) -> str:
    # An item that failed and then succeeded on a retry is not missing.
    errors, mapped = state.get("errors", {}), state.get("mapped", {})
    failed = sorted((key for key in errors if key not in mapped), key=int)
    return "; ".join(f"item {key}: {errors[key]}" for key in failed)

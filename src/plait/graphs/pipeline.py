"""Pipeline: stages run in order, each on the previous stage's output.

A stage's output is checked by its validator; a rejected output is re-asked with the problem,
then handed to the stage's fallback agent, then the run fails with an error naming the stage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import Field

from plait.errors import GraphSetupError, PlaitError
from plait.graphs.checks import NODE_NAME, check_unique
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, user_prompt
from plait.nodes.kit import node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

Validator = Callable[[str], "str | None"]  # returns the problem, or None when the output is fine


class StageFailed(PlaitError):
    """A stage's output failed validation after its retries and its fallback."""


class PipelineState(CommonState, total=False):
    stages: Annotated[dict[str, str], merge_by_key]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: the role that does it, how its output is checked, who steps in."""

    name: str
    instructions: str | None = None
    require: str | None = None  # a regex the output must contain
    fallback: str | None = None  # a role asked once when the stage's own attempts fail


def not_empty(text: str) -> str | None:
    """The default validator: the stage must say something."""
    return None if text.strip() else "the output is empty"


def load_spec(path: str) -> list[Stage]:
    """Read stages from a JSON file: a list of objects with ``name`` and optional
    ``instructions``, ``require`` (regex) and ``fallback`` (role).

    Raises:
        GraphSetupError: the file is missing, not JSON, or not a list of stage objects.
    """
    try:
        raw = json.loads(Path(path).read_text())
        return [Stage(**item) for item in raw]
    except FileNotFoundError:
        raise GraphSetupError(f"pipeline spec file {path!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise GraphSetupError(f"pipeline spec file {path!r} is not JSON: {exc.msg}") from None
    except TypeError as exc:
        raise GraphSetupError(
            f"pipeline spec {path!r} must be a list of objects with keys name, instructions, "
            f"require, fallback: {exc}"
        ) from None


@validated
def create_pipeline_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    stages: Annotated[Sequence[str | Stage], Field(description="stage roles, in order")] = (
        "extract",
        "transform",
        "format",
    ),
    spec: Annotated[
        str, Field(description="a JSON file of stages: name, instructions, require, fallback")
    ] = "",
    attempts: Annotated[int, Field(ge=1, description="calls per stage before its fallback")] = 2,
    validators: Mapping[str, Validator] | None = None,
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[PipelineState, PlaitContext]:
    """Stages run in order, each on the previous stage's output (extract, transform,
    format).

    Args:
        validators: Per-stage checks, keyed by stage name, each returning the problem or None;
            a stage with none must be non-empty (and match its ``require`` regex, if any).
        prompts: Role instructions to override, keyed by role.

    Example:
        ``create_pipeline_graph(stages=["extract", "summarize"], validators={"summarize": check})``
    """
    chosen = load_spec(spec) if spec else [s if isinstance(s, Stage) else Stage(s) for s in stages]
    _check(chosen, attempts)
    builder = StateGraph(PipelineState, context_schema=PlaitContext)
    previous = START
    for index, stage in enumerate(chosen):
        check = (validators or {}).get(stage.name) or _default_validator(stage)
        upstream = chosen[index - 1].name if index else None
        builder.add_node(
            stage.name,
            _stage_node(stage, upstream, check, attempts, prompts, last=index == len(chosen) - 1),
        )
        builder.add_edge(previous, stage.name)
        previous = stage.name
    builder.add_edge(previous, END)
    return builder


def _check(stages: list[Stage], attempts: int) -> None:
    if not stages:
        raise GraphSetupError("a pipeline needs at least one stage")
    names = [s.name for s in stages]
    reserved = set(PipelineState.__annotations__) | set(CommonState.__annotations__)
    for name in names:
        if not NODE_NAME.fullmatch(name) or name in reserved:
            raise GraphSetupError(
                f"invalid stage name {name!r}: use letters, digits, _ or -, and none of "
                f"{', '.join(sorted(reserved))}"
            )
    check_unique("stage", names)


def _default_validator(stage: Stage) -> Validator:
    if stage.require is None:
        return not_empty
    pattern = re.compile(stage.require)

    def matches(text: str) -> str | None:
        return not_empty(text) or (
            None if pattern.search(text) else f"the output must match /{stage.require}/"
        )

    return matches


def _stage_node(
    stage: Stage,
    upstream: str | None,
    check: Validator,
    attempts: int,
    prompts: Mapping[str, str] | None,
    *,
    last: bool,
) -> Any:  # a @node function; kit.node is typed to return Any
    instructions = stage.instructions or role_prompt(stage.name, prompts)

    @node
    async def run_stage(state: PipelineState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        given = {"previous_stage_output": state["stages"][upstream]} if upstream else {}
        problem, output = "", ""
        agents = [(stage.name, instructions)] * attempts
        if stage.fallback:
            agents.append((stage.fallback, role_prompt(stage.fallback, prompts)))
        for role, text in agents:
            retry = {"rejected_output": output, "problem": problem} if problem else {}
            reply = await ask(runtime, role, text, user_prompt(state["task"], **given, **retry))
            output = reply.value
            problem = check(output) or ""
            if not problem:
                say(role, "next stage", "output", output)
                update = {"stages": {stage.name: output}}
                return {**update, "result": output} if last else update
        raise StageFailed(
            f"stage {stage.name!r} failed validation after {len(agents)} call(s): {problem}"
        )

    run_stage.__name__ = stage.name
    return run_stage

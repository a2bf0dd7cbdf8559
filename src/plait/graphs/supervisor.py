"""Supervisor: plan, route one step at a time to a specialist, check each result, synthesize.

The supervisor first returns a ``Plan`` of steps, each for a specialist from the roster. It
routes each step with ``Command(goto=<specialist>)``; the specialist is sent only the task, its
instruction and the earlier step results the supervisor chose to pass. After every step the
supervisor returns a ``Decision``: whether that step's result is acceptable, the next step (or
``finish``), and the remaining plan, revised when a step was bad. Steps are recorded in
``steps`` keyed by step number. The loop stops when the supervisor finishes or after
``max_steps`` steps; either way the synthesizer answers, and ``stop_reason`` says which.

With the demo model the plan's first step goes to the first specialist, and the supervisor's
check approves it and picks ``finish`` (the first value of ``next``), so the demo run is
supervisor -> research -> supervisor -> synthesizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from plait.graphs.checks import check_node_names
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.kit import node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

DEFAULT_SPECIALISTS = ("research", "code", "review", "test")
FINISH = "finish"
REPLAN = "the steps still to do after the next one; revise them when the last step fell short"
# The supervisor sees earlier results as previews; only the step it is checking in full.
PREVIEW_CHARS = 300

PROMPTS = {
    "supervisor": "You are the supervisor. You own the outcome: plan the task as steps for "
    "your specialists, give each a precise instruction, check every result, and change the "
    "plan when a step falls short. Finish as soon as the results answer the task.",
    "research": "You are the research specialist. Gather the facts, sources and open "
    "questions your instruction asks for; be concise.",
    "code": "You are the code specialist. Write or change the code your instruction asks "
    "for, with a short explanation.",
    "review": "You are the review specialist. Review the work your instruction names for "
    "correctness and quality; list concrete problems.",
    "test": "You are the test specialist. Say how to test the work your instruction names, "
    "write the tests, and say what could break.",
    "synthesizer": "You are the synthesizer. Combine the specialists' step results into one "
    "answer to the task. Say plainly what is missing or was judged unsatisfactory.",
}


class Step(TypedDict):
    specialist: str
    instruction: str
    result: str
    ok: bool | None  # the supervisor's check; None until checked
    problem: str


class SupervisorState(CommonState, total=False):
    plan: list[
        dict[str, Any]
    ]  # the steps still to do after the current one: specialist, instruction
    steps: Annotated[dict[str, Step], merge_by_key]  # keyed by step number, "1", "2", ...
    current: str  # the step being worked on
    passed: list[str]  # earlier step numbers whose results the current specialist receives
    stop_reason: str


def decision_schemas(specialists: Sequence[str]) -> tuple[type[BaseModel], type[BaseModel]]:
    """The supervisor's ``Plan`` and ``Decision``; a specialist not in the roster is re-asked.

    ``finish`` comes first among ``next``'s values so the demo model finishes after one step.
    """
    # Literals built at run time, from the roster.
    who: Any = Literal[tuple(specialists)]
    next_one: Any = Literal[(FINISH, *specialists)]
    planned = create_model(
        "PlannedStep",
        specialist=(who, Field(description="the specialist for this step")),
        instruction=(str, Field(description="exactly what the specialist must do and return")),
    )
    plan = create_model(
        "Plan",
        steps=(list[planned], Field(min_length=1, description="the steps, in order")),
    )
    decision = create_model(
        "Decision",
        ok=(bool, Field(description="true if the last step's result does what it was asked")),
        problem=(str, Field(description="what is wrong with the last result; empty if ok")),
        next=(
            next_one,
            Field(description=f"the specialist for the next step, or {FINISH}"),
        ),
        instruction=(str, Field(description="exactly what the next specialist must do")),
        pass_steps=(
            list[int],
            Field(description="numbers of earlier steps whose results the next specialist needs"),
        ),
        plan=(list[planned], Field(description=REPLAN)),
    )
    return plan, decision


@validated
def create_supervisor_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    specialists: Annotated[
        Sequence[str], Field(description="the specialists the supervisor routes to")
    ] = DEFAULT_SPECIALISTS,
    max_steps: Annotated[
        int, Field(ge=1, description="most specialist steps before synthesizing what is done")
    ] = 10,
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[SupervisorState, PlaitContext]:
    """A supervisor plans, routes each step to a specialist, checks the result, then a
    synthesizer answers.

    Args:
        prompts: Role instructions to override, keyed by role (supervisor, synthesizer or a
            specialist).

    Returns:
        The uncompiled builder.

    Example:
        ``app = create_supervisor_graph(specialists=["research", "code"], max_steps=6).compile()``
    """
    specialists = check_node_names(
        "specialist",
        specialists,
        {"supervisor", "synthesizer", FINISH, *SupervisorState.__annotations__},
    )
    plan_schema, decision_schema = decision_schemas(specialists)
    roster = f"Specialists: {', '.join(specialists)}. At most {max_steps} steps in all."

    async def supervisor(state: SupervisorState, runtime: Runtime[PlaitContext]) -> Command[str]:
        update = await plan_or_check(state, runtime)
        # A stop reason ends the loop; otherwise the update assigned the next step.
        if "stop_reason" in update:
            return Command(goto="synthesizer", update=update)
        return Command(goto=update["steps"][update["current"]]["specialist"], update=update)

    @node
    async def plan_or_check(
        state: SupervisorState, runtime: Runtime[PlaitContext]
    ) -> dict[str, Any]:
        steps = state.get("steps", {})
        if not steps:
            reply = await ask_for(
                runtime,
                "supervisor",
                role_prompt("supervisor", prompts, PROMPTS),
                user_prompt(state["task"], rules=roster),
                plan_schema,
            )
            plan: Any = reply.value  # a create_model class: mypy cannot see its fields
            first, *rest = [s.model_dump() for s in plan.steps]
            return _dispatch(1, first, rest, [], {})
        if len(steps) >= max_steps:
            return {
                "stop_reason": f"max_steps ({max_steps}) reached; synthesized from "
                f"{len(steps)} step(s), the last one unchecked"
            }
        current = state["current"]
        reply = await ask_for(
            runtime,
            "supervisor",
            role_prompt("supervisor", prompts, PROMPTS),
            user_prompt(
                state["task"],
                rules=roster,
                steps_so_far=_digest(steps, current),
                plan=_plan_text(state.get("plan", [])),
                check_this_result=steps[current]["result"],
            ),
            decision_schema,
        )
        d: Any = reply.value  # a create_model class: mypy cannot see its fields
        checked: Step = {**steps[current], "ok": d.ok, "problem": "" if d.ok else d.problem}
        say(
            "supervisor",
            checked["specialist"],
            "check",
            "ok" if d.ok else d.problem,
            correlation_id=current,
        )
        if d.next == FINISH:
            return {
                "steps": {current: checked},
                "stop_reason": f"the supervisor finished after {len(steps)} step(s)",
            }
        passed = [str(n) for n in dict.fromkeys(d.pass_steps) if str(n) in steps]
        step = {"specialist": d.next, "instruction": d.instruction}
        replan = [s.model_dump() for s in d.plan]
        return _dispatch(len(steps) + 1, step, replan, passed, {current: checked})

    def specialist(name: str) -> Any:  # a @node function; kit.node is typed to return Any
        @node
        async def work(state: SupervisorState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
            number, steps = state["current"], state["steps"]
            earlier = {
                f"step {n} ({steps[n]['specialist']}) result": steps[n]["result"]
                for n in state.get("passed", [])
            }
            prompt = user_prompt(
                state["task"], your_instruction=steps[number]["instruction"], **earlier
            )
            reply = await ask(runtime, name, role_prompt(name, prompts, PROMPTS), prompt)
            say(name, "supervisor", "result", reply.value, correlation_id=number)
            return {"steps": {number: {**steps[number], "result": reply.value}}}

        return work

    @node
    async def synthesizer(state: SupervisorState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        steps = state.get("steps", {})
        results = "\n\n".join(
            f"[step {n} · {s['specialist']} · {_verdict(s)}] {s['instruction']}\n{s['result']}"
            for n, s in steps.items()
        )
        sections = {"step_results": results}
        if state["stop_reason"].startswith("max_steps"):
            sections["note"] = (
                f"The step limit ({max_steps}) was reached before the "
                "supervisor finished; say what is incomplete."
            )
        reply = await ask(
            runtime,
            "synthesizer",
            role_prompt("synthesizer", prompts, PROMPTS),
            user_prompt(state["task"], **sections),
        )
        say("synthesizer", "user", "result", reply.value)
        return {"result": reply.value}

    builder = StateGraph(SupervisorState, context_schema=PlaitContext)
    builder.add_node("supervisor", supervisor, destinations=(*specialists, "synthesizer"))
    for name in specialists:
        builder.add_node(name, specialist(name))
        builder.add_edge(name, "supervisor")
    builder.add_node("synthesizer", synthesizer)
    builder.add_edge(START, "supervisor")
    builder.add_edge("synthesizer", END)
    return builder


def _dispatch(
    number: int,
    step: dict[str, Any],
    plan: list[dict[str, Any]],
    passed: list[str],
    steps: dict[str, Step],
) -> dict[str, Any]:
    """The update that assigns step ``number`` (and records ``steps``); says so in the log."""
    key = str(number)
    record = Step(
        specialist=step["specialist"],
        instruction=step["instruction"],
        result="",
        ok=None,
        problem="",
    )
    say("supervisor", step["specialist"], "assign", step["instruction"], correlation_id=key)
    return {"steps": {**steps, key: record}, "current": key, "plan": plan, "passed": passed}


def _digest(steps: Mapping[str, Step], current: str) -> str:
    lines = []
    for n, s in steps.items():
        shown = "(in full below)" if n == current else _preview(s["result"])
        lines.append(f"{n}. {s['specialist']} [{_verdict(s)}]: {s['instruction']} -> {shown}")
    return "\n".join(lines)


def _plan_text(plan: Sequence[Mapping[str, str]]) -> str:
    return "\n".join(f"- {s['specialist']}: {s['instruction']}" for s in plan) or "(nothing left)"


def _verdict(step: Step) -> str:
    if step["ok"] is None:
        return "unchecked"
    return "ok" if step["ok"] else f"bad: {step['problem']}"


def _preview(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"

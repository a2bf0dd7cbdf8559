"""DAG: plan subtasks with dependencies -> run them in waves -> synthesize.

The planner returns subtasks, each with the ids it ``depends_on``. A plan with duplicate ids,
unknown or self dependencies, or a cycle goes back to the planner with the exact problem. Then a
scheduler loop: every subtask whose dependencies are done is sent (with ``Send``) to a worker,
with only those dependencies' outputs, and control returns to the scheduler until nothing is
ready. Outputs merge by subtask id, so a resumed run re-runs only unfinished subtasks.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel, Field, create_model
from typing_extensions import TypedDict

from plait.errors import GraphSetupError, PlaitError, StructuredOutputError
from plait.graphs.checks import check_subtask_range
from plait.graphs.options import validated
from plait.graphs.orchestrator import (
    DEFAULT_ROSTER,
    MaxSubtasks,
    MinSubtasks,
    Roster,
    Subtask,
    plan_schema,
    subtask_results,
)
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.kit import node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState, merge_by_key

PROMPTS = {
    "planner": "You are the planner. Break the task into subtasks, give each a role from the "
    "roster, and list in depends_on the ids of the subtasks whose outputs it needs. A subtask "
    "starts only when its dependencies are done and sees only their outputs, so keep "
    "independent work independent: it runs in parallel.",
    "synthesizer": "You are the synthesizer. Combine the subtask results into one answer to the "
    "task. If a subtask failed or was skipped, say what is missing.",
}


class DagSubtask(Subtask):
    depends_on: list[str]


class DagState(CommonState, total=False):
    subtasks: list[DagSubtask]
    waves: list[list[str]]  # the plan's waves, as validated
    outputs: Annotated[dict[str, str], merge_by_key]
    ready: list[str]  # the subtasks the scheduler is sending now
    wave: int  # waves started
    skipped: dict[str, str]  # subtask id -> why it cannot run
    stop_reason: str


class DagWorkerInput(TypedDict):
    """What ``Send`` carries to one worker: its subtask and its dependencies' outputs only."""

    task: str
    subtask: DagSubtask
    dependency_outputs: str


def _subtask_id(payload: DagWorkerInput) -> str:
    return payload["subtask"]["id"]


# Pure plan checks. Subtasks are dicts with "id" and "depends_on".


def duplicate_ids(subtasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids used by more than one subtask, in plan order."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for sub in subtasks:
        if sub["id"] in seen and sub["id"] not in duplicates:
            duplicates.append(sub["id"])
        seen.add(sub["id"])
    return duplicates


def unknown_dependencies(subtasks: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """For each subtask that names ids no subtask has, those ids."""
    ids = {sub["id"] for sub in subtasks}
    unknown = {sub["id"]: [d for d in sub["depends_on"] if d not in ids] for sub in subtasks}
    return {sid: deps for sid, deps in unknown.items() if deps}


def self_dependencies(subtasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of subtasks that depend on themselves."""
    return [sub["id"] for sub in subtasks if sub["id"] in sub["depends_on"]]


def find_cycle(subtasks: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """One dependency cycle as a path that ends where it starts, or None.

    ``["s1", "s3", "s1"]`` means s1 depends on s3, which depends on s1. Self and unknown
    dependencies are left out: ``plan_problems`` reports them on their own.
    """
    deps = {sub["id"]: [d for d in sub["depends_on"] if d != sub["id"]] for sub in subtasks}
    finished: set[str] = set()
    path: list[str] = []

    def visit(sid: str) -> list[str] | None:
        path.append(sid)
        for dep in deps[sid]:
            if dep in path:
                return [*path[path.index(dep) :], dep]
            if dep in deps and dep not in finished and (cycle := visit(dep)):
                return cycle
        path.pop()
        finished.add(sid)
        return None

    for sid in deps:
        if sid not in finished and (cycle := visit(sid)):
            return cycle
    return None


def plan_problems(subtasks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Everything that stops a plan from running, each worded to send back to the planner."""
    problems = []
    if any(not sub["id"] for sub in subtasks):
        problems.append("every subtask needs a non-empty id")
    if duplicates := duplicate_ids(subtasks):
        problems.append(f"subtask ids must be unique; used more than once: {', '.join(duplicates)}")
    for sid, deps in unknown_dependencies(subtasks).items():
        problems.append(
            f"subtask {sid} depends on unknown id(s) {', '.join(deps)}; "
            f"valid ids: {', '.join(sub['id'] for sub in subtasks)}"
        )
    for sid in self_dependencies(subtasks):
        problems.append(f"subtask {sid} depends on itself")
    if cycle := find_cycle(subtasks):
        problems.append(
            f"dependency cycle {' -> '.join(cycle)} (each depends on the next); "
            "remove one of these dependencies"
        )
    return problems


def ready_subtasks(
    subtasks: Sequence[Mapping[str, Any]], done: Collection[str], excluded: Collection[str] = ()
) -> list[str]:
    """Ids, in plan order, of the subtasks not done or excluded whose dependencies are all done."""
    return [
        sub["id"]
        for sub in subtasks
        if sub["id"] not in done
        and sub["id"] not in excluded
        and all(dep in done for dep in sub["depends_on"])
    ]


def compute_waves(subtasks: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The waves a valid plan runs in: each wave is every subtask whose dependencies ran before.

    Raises:
        ValueError: some subtasks can never start (a cycle or an unknown dependency).
    """
    done: list[str] = []
    waves = []
    while len(done) < len(subtasks):
        wave = ready_subtasks(subtasks, done)
        if not wave:
            stuck = [sub["id"] for sub in subtasks if sub["id"] not in done]
            raise ValueError(f"subtasks {', '.join(stuck)} can never start")
        waves.append(wave)
        done += wave
    return waves


def skipped_after_failures(
    subtasks: Sequence[Mapping[str, Any]], failed: Collection[str]
) -> dict[str, str]:
    """Subtasks that cannot run because a dependency failed or was itself skipped, with why."""
    skipped: dict[str, str] = {}
    changed = True
    while changed:  # to a fixed point, so skips pass down chains in any plan order
        changed = False
        for sub in subtasks:
            if sub["id"] in failed or sub["id"] in skipped:
                continue
            blocker = next((d for d in sub["depends_on"] if d in failed or d in skipped), None)
            if blocker is not None:
                how = "failed" if blocker in failed else "was skipped"
                skipped[sub["id"]] = f"its dependency {blocker} {how}"
                changed = True
    return skipped


def dag_plan_schema(roster: Sequence[str], min_subtasks: int, max_subtasks: int) -> type[BaseModel]:
    """The orchestrator's plan schema, each subtask also listing the ids it depends on."""
    plan = plan_schema(roster, min_subtasks, max_subtasks)
    step = get_args(plan.model_fields["subtasks"].annotation)[0]
    dag_step = create_model(
        "PlannedDagSubtask",
        __base__=step,
        depends_on=(
            list[str],
            Field(default_factory=list, description="ids of the subtasks whose outputs it needs"),
        ),
    )
    return create_model(
        "DagPlan",
        subtasks=(list[dag_step], Field(min_length=min_subtasks, max_length=max_subtasks)),
    )


@validated
def create_dag_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    roster: Roster = DEFAULT_ROSTER,
    min_subtasks: MinSubtasks = 3,
    max_subtasks: MaxSubtasks = 7,
    on_branch_error: Annotated[
        Literal["fail", "continue"],
        Field(
            description="a failed subtask stops the run (fail), or is recorded and its "
            "dependants skipped (continue)"
        ),
    ] = "fail",
    plan_attempts: Annotated[
        int,
        Field(
            ge=1,
            description="planner calls to get a plan without unknown dependencies or cycles",
        ),
    ] = 3,
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[DagState, PlaitContext]:
    """Subtasks with dependencies run in waves, each sent only its dependencies' outputs.

    Args:
        prompts: Role instructions to override, keyed by role (planner, synthesizer, and the
            roster's roles).

    Example:
        ``app = create_dag_graph(on_branch_error="continue").compile(checkpointer=saver)``
    """
    roster = tuple(roster)
    if not roster:
        raise GraphSetupError("roster must name at least one worker role")
    check_subtask_range(min_subtasks, max_subtasks)
    schema = dag_plan_schema(roster, min_subtasks, max_subtasks)
    plan_rules = (
        f"Use between {min_subtasks} and {max_subtasks} subtasks with short unique "
        f"ids (s1, s2, ...). Roster (valid roles): {', '.join(roster)}. depends_on "
        "lists ids from this plan; no subtask may depend on itself or on a cycle."
    )

    @node
    async def planner(state: DagState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        prompt = user_prompt(state["task"], rules=plan_rules)
        subtasks: list[DagSubtask] = []
        problems: list[str] = []
        for _ in range(plan_attempts):
            reply = await ask_for(
                runtime, "planner", role_prompt("planner", prompts, PROMPTS), prompt, schema
            )
            plan: Any = reply.value  # a create_model class: mypy cannot see its fields
            subtasks = [_as_subtask(step) for step in plan.subtasks]
            problems = plan_problems(subtasks)
            if not problems:
                break
            prompt = user_prompt(
                state["task"],
                rules=plan_rules,
                your_previous_plan=json.dumps(subtasks),
                problems_to_fix="\n".join(f"- {p}" for p in problems),
            )
        else:
            raise StructuredOutputError(
                "planner", json.dumps(subtasks), "dependency plan", "; ".join(problems)
            )
        for s in subtasks:
            say("planner", s["role"], "assign", s["description"], correlation_id=s["id"])
        return {"subtasks": subtasks, "waves": compute_waves(subtasks)}

    async def scheduler(state: DagState) -> dict[str, Any]:
        subtasks = state["subtasks"]
        done = set(state.get("outputs", {}))
        failed = {s["id"] for s in subtasks if s["id"] in state.get("errors", {})}
        skipped = skipped_after_failures(subtasks, failed)
        ready = ready_subtasks(subtasks, done, failed | set(skipped))
        update: dict[str, Any] = {"ready": ready, "skipped": skipped}
        if ready:
            update["wave"] = state.get("wave", 0) + 1
        else:
            update["stop_reason"] = _stop_reason(
                len(subtasks), len(done), state.get("wave", 0), failed, skipped
            )
        return update

    async def dispatch(state: DagState) -> list[Send] | str:
        if not state["ready"]:
            return "synthesizer"
        by_id = {s["id"]: s for s in state["subtasks"]}
        outputs = state.get("outputs", {})
        return [
            Send(
                "worker",
                DagWorkerInput(
                    task=state["task"],
                    subtask=by_id[sid],
                    dependency_outputs=_dependency_text(by_id[sid], by_id, outputs),
                ),
            )
            for sid in state["ready"]
        ]

    @node(branch=_subtask_id)
    async def worker(payload: DagWorkerInput, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        sub = payload["subtask"]
        sections = {"your_subtask": sub["description"]}
        if payload["dependency_outputs"]:
            sections["outputs_of_its_dependencies"] = payload["dependency_outputs"]
        try:
            reply = await ask(
                runtime,
                sub["role"],
                role_prompt(sub["role"], prompts, PROMPTS),
                user_prompt(payload["task"], **sections),
            )
        except PlaitError as exc:
            # Not record_failure: the failure is said by the subtask's role, as its result is.
            if on_branch_error == "fail":
                raise
            say(sub["role"], "scheduler", "failure", str(exc), correlation_id=sub["id"])
            return {"errors": {sub["id"]: str(exc)}}
        say(sub["role"], "scheduler", "result", reply.value, correlation_id=sub["id"])
        return {"outputs": {sub["id"]: reply.value}}

    @node
    async def synthesizer(state: DagState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        outputs, errors = state.get("outputs", {}), state.get("errors", {})
        skipped = state.get("skipped", {})

        def report(sub: DagSubtask) -> str:
            if sub["id"] in outputs:
                return outputs[sub["id"]]
            if sub["id"] in skipped:
                return f"SKIPPED: {skipped[sub['id']]}"
            return f"FAILED: {errors.get(sub['id'], '?')}"

        results = subtask_results(state["subtasks"], report)
        reply = await ask(
            runtime,
            "synthesizer",
            role_prompt("synthesizer", prompts, PROMPTS),
            user_prompt(state["task"], subtask_results=results),
        )
        missing = [f"{s['id']} {report(s)}" for s in state["subtasks"] if s["id"] not in outputs]
        note = "\n\nNot done: " + "; ".join(missing) if missing else ""
        say("synthesizer", "user", "result", reply.value)
        return {"result": reply.value + note}

    builder = StateGraph(DagState, context_schema=PlaitContext)
    builder.add_node("planner", planner)
    builder.add_node("scheduler", scheduler)
    builder.add_node("worker", worker, input_schema=DagWorkerInput)
    builder.add_node("synthesizer", synthesizer)
    builder.add_edge(START, "planner")
    builder.add_edge("planner", "scheduler")
    builder.add_conditional_edges("scheduler", dispatch, ["worker", "synthesizer"])
    builder.add_edge("worker", "scheduler")
    builder.add_edge("synthesizer", END)
    return builder


def _as_subtask(step: BaseModel) -> DagSubtask:
    # Ids are compared as written, so stray spaces or repeats must not make a plan invalid.
    planned: Any = step  # a create_model class: mypy cannot see its fields
    deps = [d.strip() for d in planned.depends_on if d.strip()]
    return DagSubtask(
        id=planned.id.strip(),
        role=planned.role,
        description=planned.description,
        depends_on=list(dict.fromkeys(deps)),
    )


def _dependency_text(
    sub: DagSubtask, by_id: Mapping[str, DagSubtask], outputs: Mapping[str, str]
) -> str:
    return subtask_results([by_id[dep] for dep in sub["depends_on"]], lambda s: outputs[s["id"]])


def _stop_reason(
    total: int, done: int, waves: int, failed: Collection[str], skipped: Mapping[str, str]
) -> str:
    reason = f"{done} of {total} subtasks done in {waves} wave(s)"
    if failed:
        reason += f"; failed: {', '.join(sorted(failed))}"
    if skipped:
        reason += "; skipped: " + ", ".join(f"{sid} ({why})" for sid, why in skipped.items())
    return reason

from __future__ import annotations

import json

import pytest

from plait import runner
from plait.errors import GraphSetupError
from plait.graphs.dag import (
    compute_waves,
    create_dag_graph,
    duplicate_ids,
    find_cycle,
    plan_problems,
    ready_subtasks,
    self_dependencies,
    skipped_after_failures,
    unknown_dependencies,
)
from plait.models import PlaitContext
from plait.runner import RunFailed, RunSettings
from plait.testing import ScriptedChatModel


def subs(**deps: list[str]) -> list[dict]:
    """Subtasks from ``s1=[...], s2=[...]``: id -> the ids it depends on."""
    return [{"id": sid, "depends_on": list(d)} for sid, d in deps.items()]


def plan(*steps: tuple[str, str, list[str]]) -> str:
    return json.dumps(
        {
            "subtasks": [
                {"id": sid, "role": role, "description": f"do {sid}", "depends_on": deps}
                for sid, role, deps in steps
            ]
        }
    )


def prompt(model: ScriptedChatModel, role: str, call: int = 0) -> str:
    return str(model.calls[role][call][-1].content)


async def run_dag(model, db, **options):
    return await runner.run(
        "dag",
        "Build a report",
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


DIAMOND = plan(
    ("s1", "researcher", []),
    ("s2", "analyst", ["s1"]),
    ("s3", "coder", ["s1"]),
    ("s4", "writer", ["s2", "s3"]),
)

# --- the pure plan checks ---------------------------------------------------------------


def test_unknown_dependencies_names_each_missing_id_per_subtask():
    plan_ = subs(s1=[], s2=["s1", "s9"], s3=["s7", "s8"])
    assert unknown_dependencies(plan_) == {"s2": ["s9"], "s3": ["s7", "s8"]}
    assert unknown_dependencies(subs(s1=[], s2=["s1"])) == {}


def test_self_and_duplicate_ids_are_found():
    assert self_dependencies(subs(s1=["s1"], s2=["s1"])) == ["s1"]
    dupes = [
        {"id": "s1", "depends_on": []},
        {"id": "s2", "depends_on": []},
        {"id": "s1", "depends_on": []},
    ]
    assert duplicate_ids(dupes) == ["s1"]


@pytest.mark.parametrize(
    ("plan_", "cycle"),
    [
        (subs(s1=["s3"], s2=[], s3=["s1"]), ["s1", "s3", "s1"]),
        (subs(s1=["s2"], s2=["s3"], s3=["s1"]), ["s1", "s2", "s3", "s1"]),
        # the cycle is reached from a subtask outside it; the path holds only the cycle
        (subs(s0=["s1"], s1=["s2"], s2=["s1"]), ["s1", "s2", "s1"]),
        (subs(s1=[], s2=["s1"], s3=["s1", "s2"], s4=["s3"]), None),
        # self and unknown dependencies are reported on their own, not as cycles
        (subs(s1=["s1", "s9"], s2=["s1"]), None),
    ],
)
def test_find_cycle_returns_one_cycle_as_a_closed_path(plan_, cycle):
    assert find_cycle(plan_) == cycle


def test_plan_problems_word_each_problem_with_the_ids():
    problems = plan_problems(subs(s1=["s2"], s2=["s1"], s3=["s3", "s9"]))
    text = "\n".join(problems)
    assert "s3 depends on unknown id(s) s9" in text
    assert "s3 depends on itself" in text
    assert "s1 -> s2 -> s1" in text
    assert len(problems) == 3
    assert plan_problems(subs(s1=[], s2=["s1"])) == []


def test_waves_put_each_subtask_after_all_its_dependencies():
    assert compute_waves(subs(s1=[], s2=["s1"], s3=["s1"], s4=["s2", "s3"])) == [
        ["s1"],
        ["s2", "s3"],
        ["s4"],
    ]
    assert compute_waves(subs(s3=["s2"], s2=["s1"], s1=[])) == [["s1"], ["s2"], ["s3"]]
    assert compute_waves(subs(s1=[], s2=[], s3=[])) == [["s1", "s2", "s3"]]
    with pytest.raises(ValueError, match="s1, s2 can never start"):
        compute_waves(subs(s1=["s2"], s2=["s1"], s3=[]))


def test_ready_subtasks_leaves_out_done_and_excluded_ones():
    plan_ = subs(s1=[], s2=["s1"], s3=[], s4=["s3"])
    assert ready_subtasks(plan_, done=set()) == ["s1", "s3"]
    assert ready_subtasks(plan_, done={"s1"}, excluded={"s3"}) == ["s2"]


def test_skips_pass_down_dependency_chains_in_any_plan_order():
    plan_ = subs(s4=["s3"], s3=["s2"], s2=["s1"], s1=[], s5=[])
    assert skipped_after_failures(plan_, failed={"s1"}) == {
        "s2": "its dependency s1 failed",
        "s3": "its dependency s2 was skipped",
        "s4": "its dependency s3 was skipped",
    }


def test_factory_rejects_bad_arguments_and_lists_the_choices():
    with pytest.raises(GraphSetupError, match="on_branch_error.*fail, continue"):
        create_dag_graph(on_branch_error="retry")
    with pytest.raises(GraphSetupError, match="min_subtasks"):
        create_dag_graph(min_subtasks=5, max_subtasks=2)
    with pytest.raises(GraphSetupError, match="roster"):
        create_dag_graph(roster=[])
    with pytest.raises(GraphSetupError, match="plan_attempts"):
        create_dag_graph(plan_attempts=0)


def test_a_bad_set_value_is_a_one_line_usage_error(cli):
    done = cli("run", "dag", "Build a report", "--set", "on_branch_error=retry")
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "fail, continue" in done.stderr


# --- the graph, with scripted models -----------------------------------------------------


async def test_waves_run_in_dependency_order_until_nothing_is_ready(db):
    script = {
        "planner": [DIAMOND],
        "researcher": ["R1"],
        "analyst": ["A2"],
        "coder": ["C3"],
        "writer": ["W4"],
        "synthesizer": ["final answer"],
    }
    with ScriptedChatModel(script) as model:
        outcome = await run_dag(model, db)
    assert outcome.values["waves"] == [["s1"], ["s2", "s3"], ["s4"]]
    assert outcome.values["wave"] == 3
    assert outcome.stop_reason == "4 of 4 subtasks done in 3 wave(s)"
    assert outcome.values["outputs"] == {"s1": "R1", "s2": "A2", "s3": "C3", "s4": "W4"}
    assert outcome.result == "final answer"
    synthesis = prompt(model, "synthesizer")
    assert all(text in synthesis for text in ("R1", "A2", "C3", "W4"))


async def test_a_subtask_receives_only_its_dependencies_outputs(db):
    script = {
        "planner": [DIAMOND],
        "researcher": ["R1-OUT"],
        "analyst": ["A2-OUT"],
        "coder": ["C3-OUT"],
        "writer": ["W4"],
        "synthesizer": ["done"],
    }
    with ScriptedChatModel(script) as model:
        await run_dag(model, db)
    assert "R1-OUT" in prompt(model, "analyst")
    assert "R1-OUT" in prompt(model, "coder")
    assert "C3-OUT" not in prompt(model, "analyst")
    writer = prompt(model, "writer")
    assert "A2-OUT" in writer and "C3-OUT" in writer
    assert "R1-OUT" not in writer  # s1 is a dependency of its dependencies, not its own
    assert "dependencies" not in prompt(model, "researcher")


async def test_an_unknown_dependency_goes_back_to_the_planner_naming_it(db):
    bad = plan(("s1", "researcher", []), ("s2", "writer", ["s1", "s9"]))
    good = plan(("s1", "researcher", []), ("s2", "writer", ["s1"]))
    script = {"planner": [bad, good], "researcher": ["R"], "writer": ["W"], "synthesizer": ["done"]}
    with ScriptedChatModel(script) as model:
        outcome = await run_dag(model, db, min_subtasks=2)
    retry = prompt(model, "planner", 1)
    assert "s2 depends on unknown id(s) s9" in retry
    assert '"depends_on": ["s1", "s9"]' in retry  # the plan it is asked to fix
    assert outcome.values["waves"] == [["s1"], ["s2"]]


async def test_a_cycle_goes_back_to_the_planner_as_a_path(db):
    cyclic = plan(("s1", "researcher", ["s3"]), ("s2", "analyst", []), ("s3", "writer", ["s1"]))
    script = {
        "planner": [cyclic, DIAMOND],
        "researcher": ["R"],
        "analyst": ["A"],
        "coder": ["C"],
        "writer": ["W"],
        "synthesizer": ["done"],
    }
    with ScriptedChatModel(script) as model:
        outcome = await run_dag(model, db)
    assert "dependency cycle s1 -> s3 -> s1" in prompt(model, "planner", 1)
    assert outcome.status == "done"


async def test_a_cycle_the_planner_cannot_fix_fails_the_run_naming_it(db):
    cyclic = plan(("s1", "researcher", ["s2"]), ("s2", "analyst", ["s1"]), ("s3", "coder", []))
    model = ScriptedChatModel({"planner": [cyclic, cyclic]})
    with model, pytest.raises(RunFailed, match="s1 -> s2 -> s1") as failed:
        await run_dag(model, db, plan_attempts=2)
    assert "planner" in str(failed.value)


async def test_fail_stops_the_run_and_resume_reruns_only_the_failed_subtask(db):
    steps = plan(("s1", "researcher", []), ("s2", "analyst", []), ("s3", "writer", ["s1", "s2"]))
    first = ScriptedChatModel(
        {
            "planner": [steps],
            "researcher": ["R1"],
            "analyst": ["A2"],
            "writer": [RuntimeError("writer endpoint down")],
        }
    )
    with first, pytest.raises(RunFailed, match="writer endpoint down") as failed:
        await run_dag(first, db)
    second = ScriptedChatModel({"writer": ["W3"], "synthesizer": ["final"]})
    with second:
        outcome = await runner.resume(
            failed.value.thread_id, db=db, context=PlaitContext(model=second)
        )
    assert outcome.result == "final"
    assert outcome.values["outputs"] == {"s1": "R1", "s2": "A2", "s3": "W3"}
    assert "R1" in prompt(second, "writer") and "A2" in prompt(second, "writer")


async def test_continue_records_the_failure_and_skips_its_dependants(db):
    steps = plan(
        ("s1", "researcher", []),
        ("s2", "analyst", ["s1"]),
        ("s3", "writer", ["s2"]),
        ("s4", "coder", []),
    )
    script = {
        "planner": [steps],
        "researcher": [RuntimeError("no sources")],
        "coder": ["C4"],
        "synthesizer": ["partial answer"],
    }
    with ScriptedChatModel(script) as model:  # analyst and writer are never called
        outcome = await run_dag(model, db, on_branch_error="continue")
    assert outcome.status == "done"
    assert "no sources" in outcome.errors["s1"]
    assert outcome.values["skipped"] == {
        "s2": "its dependency s1 failed",
        "s3": "its dependency s2 was skipped",
    }
    assert outcome.values["outputs"] == {"s4": "C4"}
    assert outcome.stop_reason.startswith("1 of 4 subtasks done in 1 wave(s); failed: s1")
    synthesis = prompt(model, "synthesizer")
    assert "FAILED" in synthesis and "SKIPPED: its dependency s2 was skipped" in synthesis
    assert outcome.result.startswith("partial answer\n\nNot done: s1 FAILED")
    assert "s3 SKIPPED" in outcome.result
    assert {agent: u["calls"] for agent, u in outcome.usage.items()} == {
        "planner": 1,
        "coder": 1,
        "synthesizer": 1,
    }
    assert outcome.usage["coder"]["branches"]["s4"]["calls"] == 1
    said = [
        (e["sender"], e["receiver"], e["kind"], e["correlation_id"]) for e in outcome.values["log"]
    ]
    assert sorted(said[4:6]) == [  # one wave: the branches' order is not the point
        ("coder", "scheduler", "result", "s4"),
        ("researcher", "scheduler", "failure", "s1"),
    ]
    assert said[6:] == [("synthesizer", "user", "result", "")]
    assert said[:4] == [
        ("planner", s["role"], "assign", s["id"]) for s in json.loads(steps)["subtasks"]
    ]

"""The supervisor graph: routing, checks and re-planning, the step limit, failure and resume."""

from __future__ import annotations

import json

import pytest

from plait import runner
from plait.errors import GraphSetupError
from plait.graphs.supervisor import create_supervisor_graph
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings
from plait.testing import ScriptedChatModel

TASK = "Add a retry decorator to the HTTP client"


def plan(*steps: tuple[str, str]) -> str:
    return json.dumps({"steps": [{"specialist": s, "instruction": i} for s, i in steps]})


def decision(
    next_: str,
    instruction: str = "",
    *,
    ok: bool = True,
    problem: str = "",
    pass_steps: tuple[int, ...] = (),
    rest: tuple[tuple[str, str], ...] = (),
) -> str:
    return json.dumps(
        {
            "ok": ok,
            "problem": problem,
            "next": next_,
            "instruction": instruction,
            "pass_steps": list(pass_steps),
            "plan": [{"specialist": s, "instruction": i} for s, i in rest],
        }
    )


def human(messages) -> str:
    return messages[-1].content


async def run(model, db, **options):
    return await runner.run(
        "supervisor",
        TASK,
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


async def test_finishes_when_the_supervisor_says_so_and_records_steps_by_number(db):
    with ScriptedChatModel(
        {
            "supervisor": [
                plan(("research", "find retry libraries"), ("code", "write the decorator")),
                decision("code", "write the decorator using tenacity", pass_steps=(1,)),
                decision("finish"),
            ],
            "research": ["tenacity is the usual choice"],
            "code": ["@retry(stop=stop_after_attempt(3))"],
            "synthesizer": ["use tenacity: @retry(...)"],
        }
    ) as model:
        done = await run(model, db)
    state = done.values
    assert done.result == "use tenacity: @retry(...)"
    assert done.stop_reason == "the supervisor finished after 2 step(s)"
    assert [(n, s["specialist"], s["result"], s["ok"]) for n, s in state["steps"].items()] == [
        ("1", "research", "tenacity is the usual choice", True),
        ("2", "code", "@retry(stop=stop_after_attempt(3))", True),
    ]
    # The supervisor checks the step it is shown in full.
    assert "@retry(stop=stop_after_attempt(3))" in human(model.calls["supervisor"][2])
    assert {agent: u["calls"] for agent, u in done.usage.items()} == {
        "supervisor": 3,
        "research": 1,
        "code": 1,
        "synthesizer": 1,
    }
    assert [(e["sender"], e["receiver"], e["kind"], e["correlation_id"]) for e in state["log"]] == [
        ("supervisor", "research", "assign", "1"),
        ("research", "supervisor", "result", "1"),
        ("supervisor", "research", "check", "1"),
        ("supervisor", "code", "assign", "2"),
        ("code", "supervisor", "result", "2"),
        ("supervisor", "code", "check", "2"),
        ("synthesizer", "user", "result", ""),
    ]


async def test_a_specialist_gets_its_instruction_the_task_and_only_the_steps_passed(db):
    with ScriptedChatModel(
        {
            "supervisor": [
                plan(("research", "find retry libraries"), ("review", "review the plan")),
                decision("code", "write the decorator", pass_steps=(2,)),
                decision("code", "add jitter", pass_steps=(1,)),
                decision("finish"),
            ],
            "research": ["RESEARCH-OUTPUT"],
            "code": ["CODE-V1", "CODE-V2"],
            "synthesizer": ["done"],
        }
    ) as model:
        await run(model, db)
    research_prompt = human(model.calls["research"][0])
    assert TASK in research_prompt and "find retry libraries" in research_prompt
    assert "review the plan" not in research_prompt  # the rest of the plan is not sent
    first_code, second_code = (human(m) for m in model.calls["code"])
    assert (
        "write the decorator" in first_code and "RESEARCH-OUTPUT" not in first_code
    )  # step 2 does not exist yet
    assert "add jitter" in second_code and "RESEARCH-OUTPUT" in second_code
    assert "CODE-V1" not in second_code  # step 2 was not passed


async def test_a_bad_step_is_recorded_and_re_planned(db):
    with ScriptedChatModel(
        {
            "supervisor": [
                plan(("code", "write the decorator"), ("test", "test it")),
                decision(
                    "code",
                    "handle only idempotent methods",
                    ok=False,
                    problem="retries POST requests",
                    rest=(("test", "test GET and POST"),),
                ),
                decision("finish"),
            ],
            "code": ["retry everything", "retry GET only"],
            "synthesizer": ["final"],
        }
    ) as model:
        done = await run(model, db)
    steps = done.values["steps"]
    assert (steps["1"]["ok"], steps["1"]["problem"]) == (False, "retries POST requests")
    assert steps["2"]["instruction"] == "handle only idempotent methods"
    assert done.values["plan"] == [{"specialist": "test", "instruction": "test GET and POST"}]
    assert "bad: retries POST requests" in human(model.calls["synthesizer"][0])


async def test_max_steps_synthesizes_what_it_has_and_says_so(db):
    with ScriptedChatModel(
        {
            "supervisor": [
                plan(("research", "r1")),
                decision("code", "c1"),  # the step limit is reached after this step: no third call
            ],
            "research": ["found"],
            "code": ["coded"],
            "synthesizer": ["partial answer"],
        }
    ) as model:
        done = await run(model, db, max_steps=2)
    assert done.stop_reason.startswith("max_steps (2) reached")
    assert list(done.values["steps"]) == ["1", "2"]
    assert "step limit (2) was reached" in human(model.calls["synthesizer"][0])
    assert done.result == "partial answer"


async def test_routing_to_an_unknown_specialist_is_re_asked_with_the_roster(db):
    with ScriptedChatModel(
        {
            "supervisor": [
                plan(("design", "draw it")),
                plan(("code", "write it")),
                decision("finish"),
            ],
            "code": ["coded"],
            "synthesizer": ["final"],
        }
    ) as model:
        done = await run(model, db)
    re_ask = human(model.calls["supervisor"][1])
    assert "not valid" in re_ask and all(
        f"'{s}'" in re_ask for s in ("research", "code", "review", "test")
    )
    assert done.values["steps"]["1"]["specialist"] == "code"


async def test_a_specialist_outside_a_custom_roster_is_refused(db):
    with ScriptedChatModel(
        {
            "supervisor": [plan(("research", "r")), plan(("writer", "w")), decision("finish")],
            "writer": ["written"],
            "synthesizer": ["final"],
        }
    ) as model:
        done = await run(model, db, specialists=["writer", "editor"])
    assert [s["specialist"] for s in done.values["steps"].values()] == ["writer"]


async def test_a_failed_specialist_resumes_without_redoing_finished_steps(db):
    first = ScriptedChatModel(
        {
            "supervisor": [plan(("research", "r")), decision("code", "c")],
            "research": ["found"],
            "code": [RuntimeError("endpoint down")],
        }
    )
    with pytest.raises(RunFailed) as failed:
        await run(first, db)
    first.verify()
    assert "endpoint down" in str(failed.value)
    with ScriptedChatModel(
        {
            "code": ["coded"],
            "supervisor": [decision("finish")],
            "synthesizer": ["final"],
        }
    ) as second:
        done = await runner.resume(
            failed.value.thread_id, db=db, context=PlaitContext(model=second)
        )
    assert done.status == "done" and done.result == "final"
    assert [s["result"] for s in done.values["steps"].values()] == ["found", "coded"]


def test_factory_rejects_bad_arguments():
    with pytest.raises(GraphSetupError, match="max_steps must be at least 1"):
        create_supervisor_graph(max_steps=0)
    with pytest.raises(GraphSetupError, match="invalid specialist name 'synthesizer'"):
        create_supervisor_graph(specialists=["code", "synthesizer"])
    with pytest.raises(GraphSetupError, match="unique"):
        create_supervisor_graph(specialists=["code", "code"])


@pytest.mark.parametrize("pair", ["max_steps=0", "max_steps=many", "specialists=finish,code"])
def test_bad_set_value_is_a_usage_error(cli, pair):
    done = cli("run", "supervisor", TASK, "--model", "demo", "--set", pair)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert pair.split("=")[0].rstrip("s") in done.stderr

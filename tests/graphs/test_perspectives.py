from __future__ import annotations

import pytest

from plait.errors import GraphSetupError, ModelCallError
from plait.graphs.perspectives import create_perspectives_graph
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings, resume, run
from plait.testing import ScriptedChatModel

EXPERTS = {
    "technical_expert": ["TECH: use a queue"],
    "business_expert": ["BIZ: cheap enough"],
    "security_expert": ["SEC: encrypt it"],
    "ux_expert": ["UX: keep it fast"],
}


def prompt(model: ScriptedChatModel, role: str, call: int = 0) -> str:
    return model.calls[role][call][-1].content


async def go(model, db, **options):
    return await run(
        "perspectives",
        "Design the upload service",
        db=db,
        context=model if isinstance(model, PlaitContext) else PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


async def test_every_expert_analyses_once_and_the_chief_architect_sees_them_all(db):
    with ScriptedChatModel({**EXPERTS, "chief_architect": ["Build it"]}) as model:
        outcome = await go(model, db)
    assert outcome.result == "Build it"
    assert sorted(outcome.values["analyses"]) == ["business", "security", "technical", "ux"]
    synthesis = prompt(model, "chief_architect")
    assert all(reply[0] in synthesis for reply in EXPERTS.values())
    assert "Missing" not in synthesis


async def test_each_expert_is_sent_only_the_task_and_its_own_perspective(db):
    with ScriptedChatModel({**EXPERTS, "chief_architect": ["Build it"]}) as model:
        await go(model, db)
    security = model.calls["security_expert"][0]
    assert security[0].content.startswith("You are the security_expert.")
    assert "Your perspective:\nsecurity" in security[-1].content
    for other in ("technical", "business", "ux", "TECH:", "BIZ:"):
        assert other not in security[-1].content


async def test_a_custom_perspective_gets_the_generic_expert_text(db):
    script = {"legal_expert": ["LAW: GDPR"], "ux_expert": ["UX"], "chief_architect": ["ok"]}
    with ScriptedChatModel(script) as model:
        await go(model, db, perspectives=["Legal", "ux"])
    assert model.calls["legal_expert"][0][0].content.startswith("You are the legal_expert.")


async def test_a_failed_expert_is_named_as_missing_and_the_synthesis_proceeds(db):
    script = {**EXPERTS, "business_expert": [ModelCallError("quota")], "chief_architect": ["Go"]}
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert outcome.status == "done"
    assert list(outcome.errors) == ["business"] and "quota" in outcome.errors["business"]
    synthesis = prompt(model, "chief_architect")
    assert "Missing perspectives:\n- business:" in synthesis
    assert "BIZ:" not in synthesis and "SEC: encrypt it" in synthesis
    assert outcome.result.startswith("Go\n\nMissing perspectives:\n- business:")


async def test_each_call_is_counted_once_and_each_agent_says_what_it_did(db):
    script = {**EXPERTS, "business_expert": [ModelCallError("quota")], "chief_architect": ["Go"]}
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert {agent: u["calls"] for agent, u in outcome.usage.items()} == {
        "technical_expert": 1,
        "security_expert": 1,
        "ux_expert": 1,
        "chief_architect": 1,
    }
    said = sorted((e["sender"], e["receiver"], e["kind"]) for e in outcome.values["log"])
    assert said == [
        ("business_expert", "chief_architect", "failure"),
        ("chief_architect", "user", "result"),
        ("security_expert", "chief_architect", "analysis"),
        ("technical_expert", "chief_architect", "analysis"),
        ("ux_expert", "chief_architect", "analysis"),
    ]


async def test_a_timed_out_expert_is_left_out_and_named(db):
    fast = ScriptedChatModel({**EXPERTS, "security_expert": [], "chief_architect": ["Go"]})
    # The slow expert would answer after a minute; the timeout cuts it off long before.
    slow = ScriptedChatModel({"security_expert": ["SEC: too late"]}, latency=60)
    context = PlaitContext(model=fast, model_for={"security_expert": slow})
    outcome = await go(context, db, branch_timeout=0.05)
    fast.verify()
    slow.verify()
    assert outcome.errors == {"security": "security_expert timed out after 0.05s"}
    synthesis = prompt(fast, "chief_architect")
    assert "- security: security_expert timed out" in synthesis
    assert "too late" not in synthesis


async def test_every_expert_failing_fails_the_run_and_resume_asks_them_again(db):
    # No synthesis call with nothing to synthesize: the experts are asked once more, then the
    # run stops as failed; a resume (the endpoint back) asks them again and finishes.
    down = [ModelCallError("down")] * 2
    script = {"technical_expert": down, "ux_expert": down}
    with (
        ScriptedChatModel(script) as model,
        pytest.raises(RunFailed, match="every perspective failed") as failed,
    ):
        await go(model, db, perspectives=["technical", "ux"])
    back = ScriptedChatModel(
        {"technical_expert": ["TECH"], "ux_expert": ["UX"], "chief_architect": ["Go"]}
    )
    with back:
        outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=back))
    assert outcome.result == "Go"
    assert "Missing" not in prompt(back, "chief_architect")


async def test_fail_policy_then_resume_reruns_only_the_failed_expert_and_the_synthesis(db):
    first = ScriptedChatModel({**EXPERTS, "ux_expert": [ModelCallError("endpoint down")]})
    with pytest.raises(RunFailed) as failed:
        await go(first, db, on_branch_error="fail")
    first.verify()
    with ScriptedChatModel({"ux_expert": ["UX: keep it fast"], "chief_architect": ["Go"]}) as again:
        outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=again))
    assert outcome.status == "done" and outcome.result == "Go"
    synthesis = prompt(again, "chief_architect")
    assert all(reply[0] in synthesis for reply in EXPERTS.values())


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"perspectives": []}, "at least one"),
        ({"perspectives": ["tech nical"]}, "invalid perspective"),
        ({"perspectives": ["ux", "UX"]}, "distinct"),
        ({"branch_timeout": -1}, "branch_timeout"),
        ({"on_branch_error": "skip"}, "on_branch_error"),
    ],
)
def test_bad_arguments_are_refused_naming_the_problem(kwargs, problem):
    with pytest.raises(GraphSetupError, match=problem):
        create_perspectives_graph(**kwargs)


@pytest.mark.parametrize(
    "setting", ["branch_timeout=soon", "branch_timeout=-1", "perspectives=a b"]
)
def test_a_bad_setting_is_a_usage_error_on_one_line(cli, setting):
    done = cli("run", "perspectives", "Design it", "--model", "demo", "--set", setting)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr

from __future__ import annotations

import json
import sqlite3

import pytest

from plait.errors import GraphSetupError, ModelCallError
from plait.graphs.debate import DEFAULT_POSITIONS, create_debate_graph
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings, resume, run
from plait.testing import ScriptedChatModel


def ruling(decision="Use Rust", confidence=0.7) -> str:
    return json.dumps({"decision": decision, "rationale": "weighed", "confidence": confidence})


def prompt(model: ScriptedChatModel, role: str, call: int = 0) -> str:
    return model.calls[role][call][-1].content


async def go(model, db, **options):
    return await run(
        "debate",
        "Rust or Go for the CLI?",
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


async def test_opening_only_by_default_then_the_judge_decides(db):
    script = {
        "debater_1": ["rust is safe"],
        "debater_2": ["go is simple"],
        "debater_3": ["both are fine"],
        "judge": [ruling()],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert outcome.status == "done"
    assert outcome.values["decision"] == {
        "decision": "Use Rust",
        "rationale": "weighed",
        "confidence": 0.7,
    }
    assert outcome.result.startswith("Use Rust")
    assert outcome.stop_reason == "all 1 round(s) held"
    judged = prompt(model, "judge")
    assert all(text in judged for text in ("rust is safe", "go is simple", "both are fine"))
    assert "Missing" not in judged


async def test_rebuttals_run_until_the_last_round(db):
    script = {
        "debater_1": ["a1", "a2", "a3"],
        "debater_2": ["b1", "b2", "b3"],
        "judge": [ruling()],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, debaters=2, rounds=3)
    assert outcome.stop_reason == "all 3 round(s) held"
    assert outcome.values["round"] == 3
    # The state keeps each debater's latest argument only (earlier rounds are in the writes).
    assert {k: a["text"] for k, a in outcome.values["arguments"].items()} == {
        "debater_1": "a3",
        "debater_2": "b3",
    }
    # The judge weighs each debater's latest argument only.
    judged = prompt(model, "judge")
    assert "a3" in judged and "b3" in judged
    assert "a1" not in judged and "b2" not in judged


async def test_each_debater_gets_only_its_position_then_the_others_latest_arguments(db):
    script = {
        "debater_1": ["ALPHA-1", "ALPHA-2", "ALPHA-3"],
        "debater_2": ["BETA-1", "BETA-2", "BETA-3"],
        "judge": [ruling()],
    }
    with ScriptedChatModel(script) as model:
        await go(model, db, rounds=3, positions=["pro rust", "pro go"])
    opening = prompt(model, "debater_1", 0)
    assert "pro rust" in opening and "pro go" not in opening
    rebuttal = prompt(model, "debater_1", 1)
    assert "ALPHA-1" in rebuttal and "BETA-1" in rebuttal
    last = prompt(model, "debater_1", 2)
    assert "ALPHA-2" in last and "BETA-2" in last
    assert "ALPHA-1" not in last and "BETA-1" not in last


async def test_a_failed_debater_is_named_to_the_judge_as_missing(db):
    script = {
        "debater_1": ["rust is safe"],
        "debater_2": [ModelCallError("endpoint down")],
        "debater_3": ["both are fine"],
        "judge": [ruling()],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert outcome.status == "done"
    assert list(outcome.errors) == ["r1/debater_2"]
    assert "endpoint down" in outcome.errors["r1/debater_2"]
    judged = prompt(model, "judge")
    assert "debater_2" in judged.split("Missing:")[1]
    assert "made no argument" in judged
    assert "Missing from the debate" in outcome.result and "debater_2" in outcome.result


async def test_a_debater_failing_in_a_rebuttal_keeps_its_earlier_argument(db):
    script = {
        "debater_1": ["a1", "a2"],
        "debater_2": ["b1", ModelCallError("endpoint down")],
        "debater_3": ["c1", "c2"],
        "judge": [ruling()],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, rounds=2)
    judged = prompt(model, "judge")
    assert "b1" in judged and "a2" in judged and "c2" in judged
    assert "failed in round 2; its last argument is from round 1" in judged
    assert list(outcome.errors) == ["r2/debater_2"]


async def test_rebuttals_stop_when_only_one_debater_is_left(db):
    script = {
        "debater_1": [ModelCallError("down")],
        "debater_2": ["go is simple"],
        "debater_3": [ModelCallError("down")],
        "judge": [ruling()],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, rounds=3)
    assert outcome.stop_reason == "only debater_2 was left after round 1; no one to rebut"
    assert model.count("debater_2") == 1


async def test_no_judge_call_when_every_debater_failed(db):
    script = {f"debater_{i}": [ModelCallError("down")] for i in (1, 2, 3)}
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, rounds=2)
    assert outcome.result.startswith("No decision: every debater failed.")
    assert outcome.stop_reason == "every debater failed in round 1"
    assert "decision" not in outcome.values


async def test_fail_policy_then_resume_reruns_only_the_failed_debater_and_the_judge(db):
    first = ScriptedChatModel(
        {
            "debater_1": ["rust is safe"],
            "debater_2": [ModelCallError("endpoint down")],
            "debater_3": ["both are fine"],
        }
    )
    with pytest.raises(RunFailed) as failed:
        await go(first, db, on_branch_error="fail")
    first.verify()
    with ScriptedChatModel({"debater_2": ["go is simple"], "judge": [ruling()]}) as second:
        outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=second))
    assert outcome.status == "done"
    assert outcome.errors == {}
    judged = prompt(second, "judge")
    assert all(text in judged for text in ("rust is safe", "go is simple", "both are fine"))


async def test_a_debater_failing_in_a_rebuttal_is_all_that_resume_reruns(db):
    first = ScriptedChatModel(
        {
            "debater_1": ["a1", "a2"],
            "debater_2": ["b1", ModelCallError("endpoint down")],
            "debater_3": ["c1", "c2"],
        }
    )
    with pytest.raises(RunFailed) as failed:
        await go(first, db, rounds=2, on_branch_error="fail")
    first.verify()
    with ScriptedChatModel({"debater_2": ["b2"], "judge": [ruling()]}) as second:
        outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=second))
    assert outcome.status == "done" and outcome.errors == {}
    assert "a1" in prompt(second, "debater_2") and "b1" in prompt(second, "debater_2")
    judged = prompt(second, "judge")
    assert all(text in judged for text in ("a2", "b2", "c2"))
    assert "b1" not in judged


async def newest_checkpoint(folder, rounds: int) -> tuple[int, int]:
    """The newest checkpoint's bytes (blob and its writes), and one round's argument writes."""
    db = folder / f"debate-{rounds}.db"
    settings = RunSettings(model="demo", options={"rounds": rounds})
    await run("debate", "Rust or Go for the CLI?", db=db, settings=settings)
    with sqlite3.connect(db) as conn:
        newest, size = conn.execute(
            "SELECT checkpoint_id, length(checkpoint) + length(metadata) FROM checkpoints "
            "WHERE checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1"
        ).fetchone()
        (writes,) = conn.execute(
            "SELECT COALESCE(SUM(length(value)), 0) FROM writes WHERE checkpoint_id = ?",
            (newest,),
        ).fetchone()
        (argued,) = conn.execute(
            "SELECT SUM(length(value)) FROM writes WHERE channel = 'arguments'"
        ).fetchone()
    return size + writes, argued // rounds


async def test_the_newest_checkpoint_does_not_grow_with_the_rounds(tmp_path):
    # Storage is linear in rounds only if a checkpoint does not carry every round's arguments.
    # From 4 rounds on the log window is full, so 4 more rounds may not add even one round's
    # arguments to the newest checkpoint (keeping them all would add four rounds' worth).
    four, per_round = await newest_checkpoint(tmp_path, 4)
    eight, _ = await newest_checkpoint(tmp_path, 8)
    assert eight - four < per_round, (four, eight, per_round)


async def test_every_debater_argues_a_distinct_default_position():
    app = create_debate_graph(debaters=len(DEFAULT_POSITIONS) + 2).compile()
    out = await app.ainvoke({"task": "Rust or Go?"}, context=PlaitContext(model="demo"))
    positions = [a["position"] for a in out["arguments"].values()]
    assert len(positions) == len(set(positions)) == len(DEFAULT_POSITIONS) + 2


async def test_positions_set_the_number_of_debaters(db):
    script = {f"debater_{i}": [f"arg {i}"] for i in range(1, 5)} | {"judge": [ruling()]}
    with ScriptedChatModel(script) as model:
        await go(model, db, positions=["rust", "go", "zig", "python"])
    assert "Your position:\nzig" in prompt(model, "debater_3")


def test_bad_arguments_are_refused_naming_the_problem():
    with pytest.raises(GraphSetupError, match="4 positions"):
        create_debate_graph(debaters=3, positions=["a", "b", "c", "d"])
    with pytest.raises(GraphSetupError, match="distinct"):
        create_debate_graph(positions=["Rust", "rust "])
    with pytest.raises(GraphSetupError, match="at least 2"):
        create_debate_graph(debaters=1)
    with pytest.raises(GraphSetupError, match="on_branch_error"):
        create_debate_graph(on_branch_error="ignore")


@pytest.mark.parametrize(
    "setting",
    ["rounds=0", "debaters=two", "on_branch_error=skip", "debaters=2", "positions=,"],
)
def test_a_bad_setting_is_a_usage_error_on_one_line(cli, setting):
    extra = ["--set", "positions=a,b,c"] if setting == "debaters=2" else []
    done = cli("run", "debate", "Rust or Go?", "--model", "demo", "--set", setting, *extra)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr

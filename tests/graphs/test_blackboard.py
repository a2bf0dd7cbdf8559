from __future__ import annotations

import json

import pytest

from plait.errors import GraphSetupError
from plait.graphs.blackboard import KnowledgeSource, create_blackboard_graph, eligible
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings, resume, run
from plait.testing import ScriptedChatModel

DEFAULT_SCRIPT = {
    "researcher": ["F: partitions happen"],
    "analyst": ["A: pick two of three"],
    "critic": ["R: latency is ignored"],
    "solver": ["S: CAP says choose C or A under P"],
}


def entry(round_: int, value: str = "v", author: str = "x") -> dict:
    return {"value": value, "author": author, "round": round_}


def prompt(model: ScriptedChatModel, role: str, call: int = 0) -> str:
    return model.calls[role][call][-1].content


async def go(model, db, **options):
    return await run(
        "blackboard",
        "Explain CAP",
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


# --- the eligibility rule, as a pure function ---------------------------------------------

CHAIN = (
    KnowledgeSource("researcher", (), "facts"),
    KnowledgeSource("analyst", ("facts",), "analysis"),
    KnowledgeSource("solver", ("facts", "analysis"), "solution"),
)


def test_only_sources_whose_needs_are_on_the_board_are_eligible():
    assert eligible(CHAIN, {}, {}) == ["researcher"]
    assert eligible(CHAIN, {"facts": entry(1)}, {"researcher": 1}) == ["analyst"]
    board = {"facts": entry(1), "analysis": entry(2)}
    assert eligible(CHAIN, board, {"researcher": 1, "analyst": 2}) == ["solver"]


def test_a_source_reruns_only_when_a_need_changed_since_it_last_read_the_board():
    board = {"facts": entry(1), "analysis": entry(2)}
    # analyst read facts of round 1 in round 2: nothing new, entry present -> not eligible
    assert "analyst" not in eligible(CHAIN, board, {"researcher": 1, "analyst": 2})
    # facts rewritten in round 2 while the analyst worked from the old value -> eligible again
    board["facts"] = entry(2)
    assert "analyst" in eligible(CHAIN, board, {"researcher": 2, "analyst": 2})


def test_a_source_with_no_needs_runs_only_while_its_entry_is_missing():
    assert eligible(CHAIN[:1], {"facts": entry(1)}, {}) == []


# --- stopping rules ---------------------------------------------------------------------------


async def test_stops_when_the_goal_entry_is_on_the_board(db):
    with ScriptedChatModel(DEFAULT_SCRIPT) as model:
        outcome = await go(model, db)
    assert outcome.stop_reason == "goal entry 'solution' written in round 3"
    board = outcome.values["board"]
    assert {name: (e["author"], e["round"]) for name, e in board.items()} == {
        "facts": ("researcher", 1),
        "analysis": ("analyst", 2),
        "risks": ("critic", 2),
        "solution": ("solver", 3),
    }
    assert outcome.result.startswith("S: CAP says choose C or A under P")
    assert "- risks (by critic, round 2): R: latency is ignored" in outcome.result


async def test_stops_at_max_rounds_without_the_goal(db):
    script = {k: v for k, v in DEFAULT_SCRIPT.items() if k != "solver"}
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, max_rounds=2)
    assert outcome.stop_reason == "max_rounds (2) reached without the goal entry 'solution'"
    assert "solution" not in outcome.values["board"]
    assert outcome.result.startswith("No 'solution' on the board")


async def test_stalls_when_no_source_is_eligible_and_reports_the_board(db):
    sources = [
        {"name": "researcher", "needs": [], "writes": "facts"},
        {"name": "drafter", "needs": ["facts", "notes"], "writes": "draft"},
        {"name": "noter", "needs": ["draft"], "writes": "notes"},
        {"name": "solver", "needs": ["draft"], "writes": "solution"},
    ]
    with ScriptedChatModel({"researcher": ["F: facts"]}) as model:
        outcome = await go(model, db, sources=sources)
    assert outcome.stop_reason.startswith("stalled after round 1: no source is eligible")
    assert "drafter needs notes" in outcome.stop_reason
    assert "solver needs draft" in outcome.stop_reason
    assert "- facts (by researcher, round 1): F: facts" in outcome.result


# --- conflicts --------------------------------------------------------------------------------

RIVALS = [
    {"name": "optimist", "writes": "solution", "priority": 1},
    {"name": "pessimist", "writes": "solution", "priority": 2},
]
RIVAL_SCRIPT = {"optimist": ["it works"], "pessimist": ["it fails"]}


def conflicts(outcome) -> list[str]:
    return [e["content"] for e in outcome.values["log"] if e["kind"] == "conflict"]


async def test_priority_policy_keeps_the_higher_priority_write(db):
    with ScriptedChatModel(RIVAL_SCRIPT) as model:
        outcome = await go(model, db, sources=RIVALS)
    assert outcome.values["board"]["solution"] == entry(1, "it fails", "pessimist")
    assert conflicts(outcome) == [
        "optimist, pessimist wrote 'solution'; pessimist kept by priority"
    ]


async def test_priority_tie_goes_to_the_source_declared_first(db):
    tied = [{**source, "priority": 0} for source in RIVALS]
    with ScriptedChatModel(RIVAL_SCRIPT) as model:
        outcome = await go(model, db, sources=tied)
    assert outcome.values["board"]["solution"]["author"] == "optimist"


async def test_merge_policy_asks_the_merger_with_every_write(db):
    with ScriptedChatModel({**RIVAL_SCRIPT, "merger": ["it works, mostly"]}) as model:
        outcome = await go(model, db, sources=RIVALS, conflict_policy="merge")
    assert outcome.values["board"]["solution"] == entry(1, "it works, mostly", "merger")
    asked = prompt(model, "merger")
    assert "[optimist]\nit works" in asked and "[pessimist]\nit fails" in asked
    assert conflicts(outcome) == ["merged the writes of optimist, pessimist"]


async def test_escalate_policy_lets_the_controller_pick(db):
    ruling = json.dumps({"keep": "optimist", "reason": "evidence"})
    with ScriptedChatModel({**RIVAL_SCRIPT, "controller": [ruling]}) as model:
        outcome = await go(model, db, sources=RIVALS, conflict_policy="escalate")
    assert outcome.values["board"]["solution"] == entry(1, "it works", "optimist")
    assert conflicts(outcome) == [
        "optimist, pessimist wrote 'solution'; the controller kept optimist: evidence"
    ]


# --- context, failure and resume --------------------------------------------------------------


async def test_each_source_is_sent_only_the_entries_it_needs(db):
    sources = [
        {"name": "researcher", "writes": "facts"},
        {"name": "historian", "writes": "history"},
        {"name": "analyst", "needs": ["facts"], "writes": "analysis"},
        {"name": "solver", "needs": ["analysis"], "writes": "solution"},
    ]
    script = {
        "researcher": ["FACTS-TEXT"],
        "historian": ["HISTORY-TEXT"],
        "analyst": ["ANALYSIS-TEXT"],
        "solver": ["done"],
    }
    with ScriptedChatModel(script) as model:
        await go(model, db, sources=sources)
    analyst = prompt(model, "analyst")
    assert "FACTS-TEXT" in analyst and "HISTORY-TEXT" not in analyst
    solver = prompt(model, "solver")
    assert "ANALYSIS-TEXT" in solver
    assert "FACTS-TEXT" not in solver and "HISTORY-TEXT" not in solver


async def test_a_failed_source_is_the_only_one_rerun_on_resume(db):
    first = {**DEFAULT_SCRIPT, "critic": [RuntimeError("critic down")]}
    del first["solver"]
    with ScriptedChatModel(first) as model, pytest.raises(RunFailed) as failed:
        await go(model, db)
    second = {"critic": ["R: again"], "solver": ["S: final"]}
    with ScriptedChatModel(second) as model:
        outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=model))
    board = outcome.values["board"]
    assert board["analysis"]["value"] == "A: pick two of three"
    assert board["risks"] == entry(2, "R: again", "critic")
    assert outcome.result.startswith("S: final")
    assert "R: again" in prompt(model, "solver")


# --- setup errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_rounds": 0}, "max_rounds must be at least 1"),
        ({"conflict_policy": "vote"}, "priority, merge, escalate"),
        ({"goal": "poem"}, "no source writes the goal entry 'poem'"),
        ({"sources": []}, "at least one knowledge source"),
        ({"sources": [{"name": "a", "writes": "solution", "colour": 1}]}, "keys name, needs"),
        ({"sources": [{"name": "a", "needs": "x", "writes": "solution"}]}, "needs a list"),
        (
            {"sources": [{"name": "a", "needs": ["solution"], "writes": "solution"}]},
            "needs the entry it writes",
        ),
        (
            {"sources": [{"name": "a", "needs": ["x"], "writes": "solution"}]},
            "needs 'x', which no source writes",
        ),
        (
            {"sources": [{"name": "a", "writes": "solution"}, {"name": "a", "writes": "b"}]},
            "unique",
        ),
    ],
)
def test_bad_setups_are_refused_with_the_reason(options, message):
    with pytest.raises(GraphSetupError, match=message):
        create_blackboard_graph(**options)


@pytest.mark.parametrize(
    "setting", ["conflict_policy=vote", "max_rounds=0", "goal=poem", "sources=not-json"]
)
def test_a_bad_option_on_the_cli_is_a_one_line_usage_error(cli, setting):
    done = cli("run", "blackboard", "Explain CAP", "--model", "demo", "--set", setting)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error:")

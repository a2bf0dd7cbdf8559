from __future__ import annotations

import json

import pytest

from plait.errors import GraphSetupError
from plait.graphs.auction import Bid, create_auction_graph, merge_bids, select_winner
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings, resume, run
from plait.testing import ScriptedChatModel


def offer(willing=True, capable=True, score=1.0, cost=1.0, time=1.0) -> Bid:
    return Bid(
        willing=willing, capable=capable, capability_score=score, cost=cost, estimated_time=time
    )


def bid_text(**fields) -> str:
    return offer(**fields).model_dump_json()


def prompt(model: ScriptedChatModel, role: str, call: int = 0) -> str:
    return model.calls[role][call][-1].content


async def go(model, db, **options):
    return await run(
        "auction",
        "Explain CAP",
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


# --- winner selection, a pure function --------------------------------------------------------


def test_lowest_cost_per_capability_wins():
    bids = {"cheap_weak": offer(cost=1, score=0.2), "dear_strong": offer(cost=2, score=1.0)}
    assert select_winner(bids) == "dear_strong"  # 2.0 per capability beats 5.0


def test_ties_go_to_the_faster_bid_then_the_name_that_sorts_first():
    assert (
        select_winner({"a": offer(cost=2, score=1, time=5), "b": offer(cost=1, score=0.5, time=3)})
        == "b"
    )
    assert select_winner({"zed": offer(), "amy": offer(), "bob": offer()}) == "amy"


@pytest.mark.parametrize(
    "invalid",
    [offer(willing=False, cost=0), offer(capable=False, cost=0), offer(score=0.0, cost=0)],
    ids=["unwilling", "incapable", "zero score"],
)
def test_invalid_bids_never_win_however_cheap(invalid):
    assert select_winner({"cheat": invalid, "honest": offer(cost=9)}) == "honest"


def test_no_valid_bid_means_no_winner():
    assert select_winner({"a": offer(willing=False), "b": offer(score=0.0)}) is None
    assert select_winner({}) is None


def test_a_free_valid_bid_wins():
    assert select_winner({"paid": offer(cost=1), "free": offer(cost=0)}) == "free"


def test_bids_merge_by_lot_and_bidder():
    merged = merge_bids({"s1": {"a": {"cost": 1}}}, {"s1": {"b": {"cost": 2}}, "s2": {"a": {}}})
    assert merged == {"s1": {"a": {"cost": 1}, "b": {"cost": 2}}, "s2": {"a": {}}}
    assert merge_bids(merged, {"s1": {"a": {"cost": 3}}})["s1"] == {
        "a": {"cost": 3},
        "b": {"cost": 2},
    }


# --- the graph --------------------------------------------------------------------------------


async def test_the_winner_executes_and_the_losers_only_bid(db):
    script = {
        "researcher": [bid_text(cost=3)],
        "analyst": [bid_text(cost=1), "ANALYST ANSWER"],
        "writer": [bid_text(cost=2)],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert outcome.result == "ANALYST ANSWER"
    assert outcome.stop_reason == "task: won by analyst (cost per capability 1)"
    assert outcome.values["awards"] == {"task": {"agent": "analyst", "how": "bid"}}
    assert set(outcome.values["bids"]["task"]) == {"researcher", "analyst", "writer"}
    assert outcome.values["bids"]["task"]["writer"]["cost"] == 2


async def test_nobody_takes_it_without_a_valid_bid_or_fallback(db):
    script = {
        "researcher": [bid_text(willing=False)],
        "analyst": [bid_text(capable=False)],
        "writer": [bid_text(score=0.0)],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert outcome.stop_reason == "task: no valid bid and no fallback configured"
    assert outcome.result.startswith("Nobody could take the work.")
    assert "analyst not capable; researcher unwilling; writer capability_score 0" in outcome.result


async def test_the_fallback_takes_work_nobody_bid_for(db):
    script = {
        "researcher": [bid_text(willing=False)],
        "analyst": [bid_text(willing=False)],
        "writer": [bid_text(willing=False)],
        "generalist": ["GENERAL ANSWER"],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, fallback="generalist")
    assert outcome.result == "GENERAL ANSWER"
    assert outcome.stop_reason == "task: no valid bid, given to the fallback generalist"


SPLIT = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "description": "DEFINE-CAP"},
            {"id": "s2", "description": "GIVE-EXAMPLES"},
        ]
    }
)


def by_subtask(s1: str, s2: str):
    # Bids for the two subtasks run in parallel, so a bidder's replies follow its prompt.
    return lambda messages: s1 if "DEFINE-CAP" in messages[-1].content else s2


async def test_each_subtask_is_auctioned_and_bidders_see_only_its_announcement(db):
    script = {
        "planner": [SPLIT],
        "researcher": [by_subtask(bid_text(cost=1), bid_text(cost=5))] * 2 + ["DEFINITION"],
        "writer": [by_subtask(bid_text(cost=5), bid_text(cost=1))] * 2 + ["EXAMPLES"],
        "synthesizer": ["JOINED"],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, decompose=True, bidders=["researcher", "writer"])
    assert outcome.result == "JOINED"
    assert outcome.values["awards"] == {
        "s1": {"agent": "researcher", "how": "bid"},
        "s2": {"agent": "writer", "how": "bid"},
    }
    assert set(outcome.values["bids"]) == {"s1", "s2"}
    for role in ("researcher", "writer"):
        bids = [prompt(model, role, i) for i in range(2)]
        assert sorted("DEFINE-CAP" in p for p in bids) == [False, True]
        assert all(("DEFINE-CAP" in p) != ("GIVE-EXAMPLES" in p) for p in bids)
    assert "GIVE-EXAMPLES" not in prompt(model, "researcher", 2)
    joined = prompt(model, "synthesizer")
    assert "DEFINITION" in joined and "EXAMPLES" in joined


async def test_a_subtask_nobody_takes_is_named_to_the_synthesizer(db):
    script = {
        "planner": [SPLIT],
        "researcher": [by_subtask(bid_text(), bid_text(willing=False))] * 2 + ["DEFINITION"],
        "synthesizer": ["PARTIAL"],
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, decompose=True, bidders=["researcher"])
    assert outcome.result == "PARTIAL"
    assert "s2: no valid bid and no fallback configured" in outcome.stop_reason
    assert "[s2 · nobody] GIVE-EXAMPLES\nNOT DONE" in prompt(model, "synthesizer")


async def test_a_failed_bid_is_the_only_one_rerun_on_resume(db):
    first = {
        "researcher": [RuntimeError("bidder down")],
        "analyst": [bid_text(cost=1)],
        "writer": [bid_text(cost=2)],
    }
    model = ScriptedChatModel(first)
    with pytest.raises(RunFailed) as failed:
        await go(model, db)
    model.verify()
    second = {"researcher": [bid_text(cost=3)], "analyst": ["ANALYST ANSWER"]}
    with ScriptedChatModel(second) as model:
        outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=model))
    assert outcome.result == "ANALYST ANSWER"
    assert set(outcome.values["bids"]["task"]) == {"researcher", "analyst", "writer"}


# --- setup errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bidders": []}, "at least one named bidder"),
        ({"bidders": ["a", ""]}, "at least one named bidder"),
        ({"bidders": ["a", "a"]}, "unique"),
        ({"min_subtasks": 4, "max_subtasks": 2}, "min_subtasks <= max_subtasks"),
    ],
)
def test_bad_setups_are_refused_with_the_reason(options, message):
    with pytest.raises(GraphSetupError, match=message):
        create_auction_graph(**options)


@pytest.mark.parametrize(
    "setting", ["decompose=maybe", "min_subtasks=0", "bidders=,", "max_subtasks=1"]
)
def test_a_bad_option_on_the_cli_is_a_one_line_usage_error(cli, setting):
    done = cli("run", "auction", "Explain CAP", "--model", "demo", "--set", setting)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error:")

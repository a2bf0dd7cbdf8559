from __future__ import annotations

import json

import pytest

from plait.errors import GraphSetupError, ModelCallError
from plait.graphs.consensus import create_consensus_graph, normalise, tally
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings, resume, run
from plait.testing import ScriptedChatModel


def ballot(position: str, confidence: float = 0.8, rationale: str = "because") -> str:
    return json.dumps({"position": position, "confidence": confidence, "rationale": rationale})


def votes(*cast: str | tuple[str, float]) -> list[dict]:
    return [
        {"position": v, "confidence": 1.0}
        if isinstance(v, str)
        else {"position": v[0], "confidence": v[1]}
        for v in cast
    ]


def majority(*cast, quorum=2):
    return tally(votes(*cast), method="majority", quorum=quorum, threshold=0.6)


def weighted(*cast, threshold=0.6):
    return tally(votes(*cast), method="weighted", quorum=1, threshold=threshold)


async def go(model, db, **options):
    return await run(
        "consensus",
        "Rust or Go for the CLI?",
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


# --- the tally, a pure function ---------------------------------------------------------------


def test_majority_reaches_consensus_at_the_quorum():
    counted = majority("rust", "rust", "go", quorum=2)
    assert counted["consensus"] is True
    assert counted["leader"] == "rust"
    assert counted["counts"] == {"rust": 2, "go": 1}
    assert counted["confidence"] == pytest.approx(2 / 3, abs=1e-4)
    assert counted["reason"] == "2 of 3 votes for 'rust', meeting the quorum of 2"


def test_majority_short_of_the_quorum_is_no_consensus_but_names_the_leader():
    counted = majority("rust", "rust", "go", "zig", "c", quorum=3)
    assert counted["consensus"] is False
    assert counted["leader"] == "rust"
    assert "short of the quorum of 3" in counted["reason"]


def test_a_tie_is_no_consensus_even_when_both_meet_the_quorum():
    counted = majority("rust", "go", quorum=1)
    assert counted["consensus"] is False
    assert counted["leader"] is None
    assert counted["reason"] == "tie between 'rust', 'go' at 1 vote(s) each"
    assert majority("a", "a", "b", "b", "c", quorum=2)["consensus"] is False


def test_weighted_reaches_consensus_at_the_threshold():
    counted = weighted(("rust", 0.9), ("rust", 0.9), ("go", 0.6), threshold=0.6)
    assert counted["consensus"] is True
    assert counted["leader"] == "rust"
    assert counted["confidence"] == pytest.approx(0.75)
    assert counted["weights"] == {"rust": 1.8, "go": 0.6}


def test_weighted_exactly_at_the_threshold_counts_despite_float_sums():
    # 0.8 / (0.8 + 0.2) comes out as 0.7999999999999999 in floats.
    counted = weighted(("rust", 0.1), ("rust", 0.7), ("go", 0.2), threshold=0.8)
    assert counted["consensus"] is True
    assert "meeting the threshold of 80%" in counted["reason"]


def test_weighted_short_of_the_threshold_is_no_consensus():
    counted = weighted(("rust", 0.5), ("go", 0.4), ("zig", 0.4), threshold=0.6)
    assert counted["consensus"] is False
    assert counted["leader"] == "rust"
    assert "short of the threshold of 60%" in counted["reason"]


def test_weighted_ties_and_zero_confidence_are_no_consensus():
    assert weighted(("rust", 0.5), ("go", 0.5), threshold=0.1)["consensus"] is False
    none = weighted(("rust", 0.0), ("go", 0.0))
    assert none["consensus"] is False
    assert none["reason"] == "the votes carry no confidence to weigh"


def test_weighing_by_confidence_can_overturn_a_head_count():
    cast = [("rust", 0.2), ("rust", 0.2), ("go", 0.9)]
    assert majority(*cast, quorum=2)["leader"] == "rust"
    assert weighted(*cast, threshold=0.6)["leader"] == "go"


@pytest.mark.parametrize("method", ["majority", "weighted"])
def test_no_votes_is_no_consensus(method):
    counted = tally([], method=method, quorum=1, threshold=0.6)
    assert counted["consensus"] is False
    assert counted["leader"] is None
    assert counted["votes"] == 0 and counted["counts"] == {}
    assert counted["reason"] == "no votes were cast"


def test_positions_differing_in_case_or_spacing_count_as_one_named_as_first_written():
    counted = majority(" Use Rust ", "use  rust", "USE RUST\n", "Go", quorum=3)
    assert counted["counts"] == {"Use Rust": 3, "Go": 1}
    assert counted["consensus"] is True and counted["leader"] == "Use Rust"
    assert normalise("Straße") == normalise("STRASSE")


# --- the graph --------------------------------------------------------------------------------


async def test_consensus_in_the_first_round_stops_the_vote(db):
    script = {"voter": [ballot("Rust"), ballot("rust "), ballot("Go")]}
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert outcome.values["consensus"] is True
    assert outcome.values["round"] == 1
    assert (
        outcome.stop_reason
        == "consensus in round 1: 2 of 3 votes for 'Rust', meeting the quorum of 2"
    )
    assert outcome.result.startswith("Rust\n\nConsensus reached in round 1 by majority vote")
    assert sorted(outcome.values["votes"]) == ["r1/voter_1", "r1/voter_2", "r1/voter_3"]
    assert sorted(outcome.usage) == ["voter_1", "voter_2", "voter_3"]


async def test_without_consensus_voters_revote_until_they_agree(db):
    script = {
        "voter": [
            ballot("rust"),
            ballot("go"),
            ballot("zig"),
            ballot("rust"),
            ballot("rust"),
            ballot("go"),
        ]
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, rounds=2)
    assert outcome.values["round"] == 2
    assert outcome.stop_reason.startswith("consensus in round 2")
    assert len(outcome.values["votes"]) == 6
    assert "Round 1 votes:" in outcome.result and "Round 2 votes:" in outcome.result


async def test_no_consensus_after_the_last_round_says_so_with_the_tally(db):
    split = [ballot("rust"), ballot("go")]
    with ScriptedChatModel({"voter": split * 2}) as model:
        outcome = await go(model, db, voters=2, rounds=1)
    assert outcome.values["consensus"] is False
    assert outcome.stop_reason == (
        "no consensus after 2 round(s): tie between 'rust', 'go' at 1 vote(s) each"
    )
    assert outcome.result.startswith("No consensus after 2 round(s) (majority): tie")
    assert "Tally: rust: 1 vote(s), total confidence 0.80; go: 1 vote(s)" in outcome.result
    assert outcome.result.count("- voter_") == 4


async def test_rounds_zero_votes_once(db):
    with ScriptedChatModel({"voter": [ballot("rust"), ballot("go")]}) as model:
        outcome = await go(model, db, voters=2, rounds=0)
    assert outcome.stop_reason.startswith("no consensus after 1 round(s)")


async def test_a_revote_sees_only_the_last_rounds_tally_and_reasons(db):
    script = {
        "voter": [
            ballot("rust", rationale="R1-A"),
            ballot("go", rationale="R1-B"),
            ballot("rust", rationale="R2-A"),
            ballot("go", rationale="R2-B"),
            ballot("go", rationale="R3-A"),
            ballot("go", rationale="R3-B"),
        ]
    }
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, voters=2, rounds=2)
    assert outcome.stop_reason.startswith("consensus in round 3")
    first, second, third = (model.calls["voter"][i][-1].content for i in (0, 2, 4))
    assert "Previous round" not in first
    assert "Tally: rust: 1 vote(s)" in second and "R1-A" in second and "R1-B" in second
    assert "No consensus yet: tie between 'rust', 'go'" in second
    assert "R2-A" in third and "R2-B" in third
    assert "R1-A" not in third and "R1-B" not in third


async def test_weighted_method_through_the_graph(db):
    script = {"voter": [ballot("rust", 0.2), ballot("rust", 0.2), ballot("go", 0.9)]}
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db, method="weighted", threshold=0.6)
    assert outcome.values["tally"]["leader"] == "go"
    assert outcome.result.startswith("go\n\nConsensus reached in round 1 by weighted vote")


async def test_an_invalid_ballot_is_asked_again(db):
    script = {"voter": ["I pick rust", ballot("rust"), ballot("rust"), ballot("rust")]}
    with ScriptedChatModel(script) as model:
        outcome = await go(model, db)
    assert outcome.values["consensus"] is True
    assert sum(u["calls"] for u in outcome.usage.values()) == 4


async def test_a_failed_voter_fails_the_run_and_resume_asks_only_it_again(db):
    first = ScriptedChatModel({"voter": [ballot("rust"), ballot("rust"), ModelCallError("down")]})
    with pytest.raises(RunFailed) as failed:
        await go(first, db)
    first.verify()
    with ScriptedChatModel({"voter": [ballot("go")]}) as again:
        outcome = await resume(failed.value.thread_id, db=db, context=PlaitContext(model=again))
    assert outcome.status == "done"
    assert outcome.values["tally"]["counts"] == {"rust": 2, "go": 1}


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"voters": 1}, "voters"),
        ({"method": "plurality"}, "method"),
        ({"quorum": 4}, "quorum"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"rounds": -1}, "rounds"),
    ],
)
def test_bad_arguments_are_refused_naming_the_problem(kwargs, problem):
    with pytest.raises(GraphSetupError, match=problem):
        create_consensus_graph(**kwargs)


@pytest.mark.parametrize(
    "setting", ["method=plurality", "threshold=1.5", "quorum=9", "voters=1", "rounds=many"]
)
def test_a_bad_setting_is_a_usage_error_on_one_line(cli, setting):
    done = cli("run", "consensus", "Rust or Go?", "--model", "demo", "--set", setting)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr

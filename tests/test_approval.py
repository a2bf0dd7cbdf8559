"""A person in the loop: `--approve-before NODE` on any graph, the review pattern's
`human_review`, and `ask_human` in an authored graph. A paused run exits 3 and says what is
waiting; `plait resume ID --approve | --reject --feedback | --answer` continues it, and no model
call is made twice. Through the CLI the demo model's usage counts the calls; through the runner
a scripted model fails the test on any call more or less than written."""

from __future__ import annotations

import asyncio
import json
import textwrap

import pytest

from plait import PlaitContext, RunFailed, RunSettings, resume, run
from plait.errors import ExitCode
from plait.nodes.human import Decision
from plait.testing import LoopbackServer, ScriptedChatModel

PIPELINE = {"extract": ["facts"], "transform": ["shaped"], "format": ["final text"]}
GATE = RunSettings(approve_before=["transform"])


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result.stdout


def as_json(result):
    return json.loads(ok(result))


def calls(outcome: dict) -> dict[str, int]:
    return {agent: usage["calls"] for agent, usage in outcome["usage"].items()}


def status_of(cli, thread_id: str) -> str:
    return as_json(cli("threads", "show", thread_id, "--json"))["status"]


def pause(cli, thread_id: str = "gate", *extra: str):
    """A demo pipeline run that stops before `transform`."""
    gate = f"--approve-before transform --thread {thread_id} --model demo".split()
    paused = cli("run", "pipeline", "summarise it", *gate, *extra)
    assert paused.exit_code == ExitCode.WAITING, (paused.exit_code, paused.stderr)
    return paused


# --- --approve-before ----------------------------------------------------------------------


def test_approve_before_pauses_and_approve_finishes_like_a_straight_run(cli):
    straight = as_json(cli("run", "pipeline", "summarise it", "--json", "--model", "demo"))

    paused = pause(cli)
    assert paused.stdout == ""  # no result yet; what is waiting goes to stderr
    assert "waiting for a person before transform" in paused.stderr
    assert "continue with: plait resume gate --approve" in paused.stderr
    assert calls(as_json(cli("threads", "show", "gate", "--json"))) == {"extract": 1}

    listed = as_json(cli("threads", "--status", "waiting", "--json"))
    assert [(t["thread_id"], t["status"]) for t in listed] == [("gate", "waiting")]
    table = ok(cli("threads", "--status", "waiting")).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["gate"]
    assert "waiting" in table[1].split()

    done = as_json(cli("resume", "gate", "--approve", "--json"))
    assert done["status"] == "done" and done["waiting"] is None
    assert done["result"] == straight["result"]
    assert calls(done) == calls(straight) == {"extract": 1, "transform": 1, "format": 1}
    assert status_of(cli, "gate") == "done"
    assert as_json(cli("threads", "--status", "waiting", "--json")) == []


def test_an_approved_pause_makes_exactly_the_calls_of_a_straight_run(db):
    with ScriptedChatModel(PIPELINE) as model:
        straight = asyncio.run(run("pipeline", "t", db=db, context=PlaitContext(model=model)))

    with ScriptedChatModel({"extract": ["facts"]}) as before:
        paused = asyncio.run(
            run("pipeline", "t", db=db, settings=GATE, context=PlaitContext(model=before))
        )
    assert paused.status == "waiting" and paused.result is None
    assert paused.waiting == {"before": ["transform"], "questions": []}

    with ScriptedChatModel({"transform": ["shaped"], "format": ["final text"]}) as after:
        done = asyncio.run(
            resume(
                paused.thread_id,
                db=db,
                decision=Decision(approved=True),
                context=PlaitContext(model=after),
            )
        )
    assert done.status == "done" and done.result == straight.result == "final text"
    # The prompts are the same too: transform was given extract's output, as in a straight run.
    assert after.calls["transform"][0][-1].content == model.calls["transform"][0][-1].content


def test_a_paused_run_in_json_says_what_it_waits_for(cli):
    paused = pause(cli, "gate", "--json")
    document = json.loads(paused.stdout)
    assert document["status"] == "waiting" and document["thread_id"] == "gate"
    assert document["waiting"] == {"before": ["transform"], "questions": []}
    assert document["result"] is None
    assert "waiting for a person before transform" in paused.stderr


def test_the_progress_lines_name_only_the_graphs_nodes(cli):
    # LangGraph reports the pause as an update from "__interrupt__"; that is not a node of the
    # user's graph, so it must not be shown as one that finished.
    paused = pause(cli)
    assert "done: extract" in paused.stderr
    assert "__interrupt__" not in paused.stderr


def test_resume_of_a_waiting_thread_without_a_decision_is_refused_in_one_line(cli):
    pause(cli)
    refused = cli("resume", "gate")
    assert refused.exit_code == ExitCode.USAGE
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: thread 'gate' is waiting for a person before transform")
    assert "--approve" in line and "--reject" in line and "--answer" in line
    shown = as_json(cli("threads", "show", "gate", "--json"))
    assert shown["status"] == "waiting" and calls(shown) == {"extract": 1}


def test_reject_with_feedback_stops_the_thread_and_a_later_approve_continues_it(cli):
    pause(cli)
    outcome = as_json(cli("resume", "gate", "--reject", "--feedback", "stale facts", "--json"))
    assert outcome["status"] == "rejected" and outcome["result"] is None
    assert outcome["stop_reason"] == "rejected before transform: stale facts"
    assert calls(outcome) == {"extract": 1}

    shown = ok(cli("threads", "show", "gate"))
    assert shown.splitlines()[0].endswith("rejected")
    assert "error: rejected before transform: stale facts" in shown
    listed = as_json(cli("threads", "--status", "rejected", "--json"))
    assert [t["thread_id"] for t in listed] == ["gate"]

    # A rejected thread still needs a decision; --approve overrides the rejection.
    assert cli("resume", "gate").exit_code == ExitCode.USAGE
    done = as_json(cli("resume", "gate", "--approve", "--json"))
    assert done["status"] == "done" and done["result"].startswith("[demo] canned format")
    assert calls(done) == {"extract": 1, "transform": 1, "format": 1}
    assert as_json(cli("threads", "show", "gate", "--json"))["error"] is None


def test_a_rejection_without_feedback_says_no_reason_was_given(cli):
    pause(cli)
    ok(cli("resume", "gate", "--reject"))
    shown = as_json(cli("threads", "show", "gate", "--json"))
    assert shown["status"] == "rejected"
    assert shown["error"] == "rejected before transform: no reason given"


def test_feedback_alone_does_not_pass_an_approval_gate(cli):
    # `--feedback` says what to change; without `--approve` it must not be taken as consent.
    pause(cli)
    cli("resume", "gate", "--feedback", "use the 2024 figures")
    shown = as_json(cli("threads", "show", "gate", "--json"))
    assert shown["status"] != "done"
    assert "transform" not in shown["usage"]


def test_approve_and_reject_together_are_refused(cli):
    pause(cli)
    both = cli("resume", "gate", "--approve", "--reject")
    assert both.exit_code == ExitCode.USAGE
    (line,) = both.stderr.strip().splitlines()
    assert line == "error: --approve and --reject contradict each other; give one"
    assert status_of(cli, "gate") == "waiting"


def test_a_decision_for_a_thread_that_is_not_waiting_is_refused(cli, db):
    model = ScriptedChatModel({"extract": [RuntimeError("endpoint fell over")]})
    with model, pytest.raises(RunFailed):
        asyncio.run(
            run("pipeline", "t", db=db, thread_id="broken", context=PlaitContext(model=model))
        )
    for decision in (["--approve"], ["--reject", "--feedback", "no"], ["--answer", "eu"]):
        refused = cli("resume", "broken", *decision)
        assert refused.exit_code == ExitCode.USAGE, refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert line == "error: thread 'broken' is not waiting for a decision"
        assert status_of(cli, "broken") == "failed"  # not claimed, not changed

    ok(cli("run", "pipeline", "t", "--thread", "finished", "--model", "demo"))
    refused = cli("resume", "finished", "--approve")
    assert refused.exit_code == ExitCode.THREAD
    assert "already finished" in refused.stderr


def test_approve_before_an_unknown_node_lists_the_nodes_and_starts_nothing(cli):
    bad = cli("run", "pipeline", "t", "--approve-before", "nosuchnode", "--model", "demo")
    assert bad.exit_code == ExitCode.USAGE
    (line,) = bad.stderr.strip().splitlines()
    assert line == (
        "error: --approve-before 'nosuchnode': graph 'pipeline' has no such node; "
        "nodes: extract, transform, format"
    )
    assert as_json(cli("threads", "--json")) == []


def test_approve_before_several_nodes_pauses_before_each(cli):
    pause(cli, "gate", "--approve-before", "format")
    second = cli("resume", "gate", "--approve")
    assert second.exit_code == ExitCode.WAITING
    assert "waiting for a person before format" in second.stderr
    assert calls(as_json(cli("threads", "show", "gate", "--json"))) == {
        "extract": 1,
        "transform": 1,
    }
    assert ok(cli("resume", "gate", "--approve")).startswith("[demo] canned format output")
    assert status_of(cli, "gate") == "done"


def test_from_python_a_pause_is_resumed_in_a_second_event_loop(db):
    # The README's way: `asyncio.run(run(...))`, then later `asyncio.run(resume(...))`. With an
    # OpenAI-compatible endpoint the second loop must not reuse the first one's HTTP client.
    with LoopbackServer(PIPELINE) as server:
        settings = RunSettings(
            model="openai:test-model", base_url=server.base_url, approve_before=["transform"]
        )
        paused = asyncio.run(run("pipeline", "t", db=db, settings=settings))
        assert paused.status == "waiting"
        try:
            done = asyncio.run(resume(paused.thread_id, db=db, decision=Decision(approved=True)))
        except RunFailed as exc:
            pytest.fail(f"the resume in a new event loop failed: {exc}")
        assert done.status == "done" and done.result == "final text"


# --- review with a person as the reviewer ----------------------------------------------------


def test_human_review_on_the_cli_shows_the_draft_and_exits_3(cli):
    args = ["--set", "human_review=true", "--model", "demo", "--thread", "hr"]
    paused = cli("run", "review", "explain CAP", *args)
    assert paused.exit_code == ExitCode.WAITING, paused.stderr
    assert "waiting for a person before review" in paused.stderr
    assert "question: Approve this draft?" in paused.stderr
    assert "draft: [demo] canned writer output for: Task: explain CAP" in paused.stderr
    assert [t["thread_id"] for t in as_json(cli("threads", "--status", "waiting", "--json"))] == [
        "hr"
    ]

    again = cli("resume", "hr", "--reject", "--feedback", "add an example")
    assert again.exit_code == ExitCode.WAITING
    assert "draft: [demo] Revised draft" in again.stderr
    done = as_json(cli("resume", "hr", "--approve", "--json"))
    assert done["status"] == "done"
    assert done["stop_reason"] == "approved by a person after 2 review(s)"
    assert "reviewer" not in done["usage"] and done["usage"]["reviser"]["calls"] == 1


def test_human_review_feedback_reaches_the_reviser_and_approval_ends_the_loop(db):
    first = ScriptedChatModel(
        {"researcher": ["facts"], "outliner": ["outline"], "writer": ["draft one"]}
    )
    settings = RunSettings(options={"human_review": True})
    paused = asyncio.run(
        run("review", "explain CAP", db=db, settings=settings, context=PlaitContext(model=first))
    )
    first.verify()
    assert paused.status == "waiting"
    assert paused.waiting == {
        "before": ["review"],
        "questions": [{"question": "Approve this draft?", "draft": "draft one"}],
    }

    second = ScriptedChatModel({"reviser": ["draft two"]})
    rejected = asyncio.run(
        resume(
            paused.thread_id,
            db=db,
            context=PlaitContext(model=second),
            decision=Decision(approved=False, feedback="add an example"),
        )
    )
    second.verify()
    (call,) = second.calls["reviser"]
    assert "add an example" in call[-1].content and "draft one" in call[-1].content
    assert rejected.status == "waiting"
    assert rejected.waiting["questions"] == [
        {"question": "Approve this draft?", "draft": "draft two"}
    ]

    third = ScriptedChatModel({})  # no model call at all: the person is the reviewer
    done = asyncio.run(
        resume(
            paused.thread_id,
            db=db,
            context=PlaitContext(model=third),
            decision=Decision(approved=True),
        )
    )
    third.verify()
    assert third.calls == {}
    assert done.status == "done" and done.result == "draft two"
    assert done.stop_reason == "approved by a person after 2 review(s)"
    assert "reviewer" not in done.usage
    assert {a: u["calls"] for a, u in done.usage.items()} == {
        "researcher": 1,
        "outliner": 1,
        "writer": 1,
        "reviser": 1,
    }


# --- ask_human in an authored graph ----------------------------------------------------------

REGION_GRAPH = """
from langgraph.graph import END, START, StateGraph

from plait import CommonState, PlaitContext
from plait.nodes.human import ask_human


def build():
    def choose(state):
        reply = ask_human("Which region?", service=state["task"])
        return {"result": f"deploying {state['task']} to {reply['answer']}"}

    builder = StateGraph(CommonState, context_schema=PlaitContext)
    builder.add_node("choose", choose)
    builder.add_edge(START, "choose")
    builder.add_edge("choose", END)
    return builder
"""


def test_an_agents_question_is_answered_with_answer(cli, tmp_path):
    graph = tmp_path / "region.py"
    graph.write_text(textwrap.dedent(REGION_GRAPH))
    paused = cli("run", f"{graph}:build", "billing", "--thread", "ask", "--model", "demo", "--json")
    assert paused.exit_code == ExitCode.WAITING, paused.stderr
    document = json.loads(paused.stdout)
    assert document["status"] == "waiting"
    assert document["waiting"] == {
        "before": ["choose"],
        "questions": [{"question": "Which region?", "service": "billing"}],
    }
    assert "question: Which region?" in paused.stderr
    assert [t["thread_id"] for t in as_json(cli("threads", "--status", "waiting", "--json"))] == [
        "ask"
    ]

    assert cli("resume", "ask").exit_code == ExitCode.USAGE
    answered = cli("resume", "ask", "--answer", "eu-west-1")
    assert ok(answered).strip() == "deploying billing to eu-west-1"
    assert status_of(cli, "ask") == "done"

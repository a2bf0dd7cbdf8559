"""Budgets: a token, cost or call limit stops a thread cleanly (exit 4, state saved), and
``plait resume ID`` with a larger budget finishes it without paying again for finished work.

The model is mostly the real ``ChatOpenAI`` against the loopback server answering as the demo
model would, so a test can count the requests that were made, and compare a stopped-and-resumed
thread with one that ran without a budget.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3

import pytest

from plait import RunSettings, resume, run
from plait.errors import ExitCode
from plait.models.resilience import Budget, BudgetExceeded
from plait.runner import BudgetStopped
from plait.testing import LoopbackServer, demo_responder, status

# The demo reviewer rejects the first draft and approves the revision: researcher, outliner,
# writer, reviewer, reviser, reviewer.
REVIEW_CALLS = 6
PLAN = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "role": "researcher", "description": "find facts"},
            {"id": "s2", "role": "analyst", "description": "weigh options"},
            {"id": "s3", "role": "coder", "description": "sketch code"},
        ]
    }
)


def typed(cli, command: str, *extra: str):
    """The CLI as a user types ``command`` (split on spaces), with ``extra`` arguments."""
    return cli(*command.split(), *extra)


def at(server: LoopbackServer) -> list[str]:
    """The flags that point a run (or a resume) at ``server`` as model ``openai:m``."""
    return ["--model", "openai:m", "--base-url", server.base_url]


def calls(usage: dict) -> int:
    return sum(u["calls"] for u in usage.values())


def cost(usage: dict) -> float:
    return sum(u["cost"] for u in usage.values())


def show(cli, thread_id: str) -> dict:
    shown = cli("threads", "show", thread_id, "--json")
    assert shown.exit_code == 0, shown.stderr
    return json.loads(shown.stdout)


def stopped_line(result) -> str:
    assert result.exit_code == ExitCode.BUDGET, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("stopped:")]
    assert len(lines) == 1, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return lines[0]


@pytest.fixture
def uninterrupted(cli) -> dict:
    """The review thread run with no budget: its usage and the requests it took."""
    with LoopbackServer(demo_responder) as server:
        done = typed(cli, "run review t --json", *at(server))
    assert done.exit_code == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert calls(outcome["usage"]) == server.count() == REVIEW_CALLS
    return outcome


def test_max_calls_stops_cleanly_and_resume_with_more_finishes_without_repeats(
    cli, db, uninterrupted
):
    with LoopbackServer(demo_responder) as first:
        result = typed(cli, "run review t --max-calls 3 --thread b", *at(first))
    assert first.count() == 3
    assert stopped_line(result) == "stopped: budget reached: calls 3 of 3"
    assert result.stdout == ""
    assert "plait resume b" in result.stderr

    listed = json.loads(cli("threads", "--status", "budget", "--json").stdout)
    assert [t["thread_id"] for t in listed] == ["b"]
    shown = show(cli, "b")
    assert (shown["status"], shown["error"]) == ("budget", "budget reached: calls 3 of 3")
    assert calls(shown["usage"]) == 3
    history = json.loads(cli("threads", "history", "b", "--json").stdout)
    assert history[0]["next"] == ["review"] and "draft" in history[0]["wrote"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Resumed against another server: see test_resume_in_the_same_process_and_endpoint.
    with LoopbackServer(demo_responder) as second:
        # The stored budget still holds: resuming without a larger one stops at once.
        again = cli("resume", "b", *at(second))
        assert stopped_line(again) == "stopped: budget reached: calls 3 of 3"
        assert second.count() == 0
        resumed = typed(cli, "resume b --max-calls 50 --json", *at(second))
    assert resumed.exit_code == 0, resumed.stderr
    assert first.count() + second.count() == REVIEW_CALLS
    outcome = json.loads(resumed.stdout)
    assert outcome["status"] == "done"
    assert outcome["result"] == uninterrupted["result"]
    assert calls(outcome["usage"]) == calls(uninterrupted["usage"])
    assert show(cli, "b")["status"] == "done"


def test_max_tokens_stops_after_the_call_that_reached_it_and_resume_finishes(cli, uninterrupted):
    with LoopbackServer(demo_responder) as first:
        result = typed(cli, "run review t --max-tokens 1 --thread tok --json", *at(first))
    assert first.count() == 1
    line = stopped_line(result)
    assert re.fullmatch(r"stopped: budget reached: tokens \d+ of 1", line)
    assert json.loads(result.stdout) == {
        "thread_id": "tok",
        "status": "budget",
        "error": line.removeprefix("stopped: "),
    }
    with LoopbackServer(demo_responder) as second:
        resumed = typed(cli, "resume tok --max-tokens 1000000 --json", *at(second))
    assert resumed.exit_code == 0, resumed.stderr
    assert first.count() + second.count() == REVIEW_CALLS
    outcome = json.loads(resumed.stdout)
    assert outcome["tokens"] == uninterrupted["tokens"]
    assert calls(outcome["usage"]) == REVIEW_CALLS


@pytest.fixture
def priced(tmp_path, monkeypatch):
    """A PLAIT_PRICES file pricing the loopback model (the server echoes the name, 'm')."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": [1000.0, 2000.0]}))  # $0.001 in, $0.002 out per token
    monkeypatch.setenv("PLAIT_PRICES", str(prices))


def test_max_cost_with_a_priced_model_stops_and_resume_with_more_finishes(
    cli, priced, uninterrupted
):
    full_cost = cost(uninterrupted["usage"])
    assert full_cost > 0.3
    with LoopbackServer(demo_responder) as first:
        result = typed(cli, "run review t --max-cost 0.10 --thread c", *at(first))
    line = stopped_line(result)
    assert re.fullmatch(r"stopped: budget reached: cost \$\d+\.\d{4} of \$0\.10\d*", line)
    spent = show(cli, "c")["usage"]
    assert 0 < first.count() == calls(spent) < REVIEW_CALLS
    assert cost(spent) >= 0.10
    # It stopped at the first call that found the limit reached, not later.
    last = [u["cost"] for u in spent.values()][-1]
    assert cost(spent) - last < 0.10

    with LoopbackServer(demo_responder) as second:
        resumed = typed(cli, "resume c --max-cost 2.00 --json", *at(second))
    assert resumed.exit_code == 0, resumed.stderr
    assert first.count() + second.count() == REVIEW_CALLS
    assert cost(json.loads(resumed.stdout)["usage"]) == pytest.approx(full_cost)


def test_an_unpriced_model_costs_nothing_and_never_reaches_a_cost_budget(cli):
    with LoopbackServer(demo_responder) as server:
        result = typed(cli, "run review t --max-cost 0.01 --json", *at(server))
        assert server.count() == REVIEW_CALLS
    assert result.exit_code == 0, result.stderr
    usage = json.loads(result.stdout)["usage"]
    assert cost(usage) == 0
    assert {name for u in usage.values() for name in u["models"]} == {"m"}


@pytest.fixture
def stopped_mid_fan_out(cli) -> LoopbackServer:
    """Thread ``fan``: an orchestrator run stopped by its token budget inside the fan-out.

    The planner's call leaves the budget open; the researcher's and coder's long replies (about
    2,000 tokens each) reach it while the analyst's first attempt is still failing late, so the
    analyst's retry finds the budget reached, after the other two branches have finished. A
    budget stop is not a branch error, so on_branch_error=continue does not swallow it.
    """
    long = "x" * 8000
    script = {
        "planner": [PLAN],
        "researcher": ["out-research " + long],
        "coder": ["out-code " + long],
        "analyst": [status(500, headers={"retry-after-ms": "1"}, delay=0.5)],
    }
    with LoopbackServer(script) as server:
        args = "run orchestrator t --max-tokens 2500 --set on_branch_error=continue --thread fan"
        result = typed(cli, args, *at(server))
    assert re.fullmatch(r"stopped: budget reached: tokens [\d,]+ of 2,500", stopped_line(result))
    roles = ("planner", "researcher", "coder", "analyst")
    assert [server.count(role) for role in roles] == [1, 1, 1, 1]
    return server


def synthesize(role: str, body: dict) -> str:
    return "out-analysis" if role == "analyst" else "SYNTH " + body["messages"][-1]["content"]


def test_a_budget_reached_mid_fan_out_keeps_the_branches_that_finished(cli, stopped_mid_fan_out):
    with LoopbackServer(synthesize) as second:
        # The finished branches' spend counts: without a larger budget nothing more is asked.
        again = cli("resume", "fan", *at(second))
        assert stopped_line(again).startswith("stopped: budget reached: tokens")
        assert second.count() == 0
        resumed = typed(cli, "resume fan --max-tokens 1000000 --json", *at(second))
    assert resumed.exit_code == 0, resumed.stderr
    # Only the stopped branch and what follows the fan-out: the others are not paid for twice.
    assert sorted(r.role for r in second.requests) == ["analyst", "synthesizer"]
    outcome = json.loads(resumed.stdout)
    for output in ("out-research", "out-analysis", "out-code"):
        assert output in outcome["result"]
    assert outcome["errors"] == {}
    assert calls(outcome["usage"]) == 5


def test_threads_show_counts_the_branches_that_finished_before_a_stop(cli, stopped_mid_fan_out):
    # Their writes are pending writes of the unfinished step: the raw checkpoint's channel
    # values do not have them yet, the graph's state (what resume continues from) does.
    shown = show(cli, "fan")
    assert sorted(shown["usage"]) == ["coder", "planner", "researcher"]
    listed = json.loads(cli("threads", "--json").stdout)
    assert (
        sum(u["input_tokens"] + u["output_tokens"] for u in shown["usage"].values())
        == (listed[0]["tokens"])
    )


def test_resume_progress_counts_each_finished_branch_once(cli, stopped_mid_fan_out):
    with LoopbackServer(synthesize) as second:
        resumed = typed(cli, "resume fan --max-tokens 1000000 --json", *at(second))
    assert resumed.exit_code == 0, resumed.stderr
    total = json.loads(resumed.stdout)["tokens"]
    progress = [line for line in resumed.stderr.splitlines() if line.strip().startswith("done:")]
    assert not [line for line in progress if "__" in line], progress
    shown = [int(re.search(r"· ([\d,]+) tokens", line)[1].replace(",", "")) for line in progress]
    assert max(shown) <= total, (progress, total)


def test_max_calls_holds_in_a_fan_out_too(cli, tmp_path):
    # --max-calls is "enforced across all branches before each model call": 8 mappers start
    # together, and each must not be let through once 3 calls are made or under way.
    items = tmp_path / "items.txt"
    items.write_text("\n".join(f"item {i}" for i in range(8)) + "\n")
    with LoopbackServer(demo_responder) as first:
        args = "run map-reduce summarize --max-calls 3 --thread mr"
        result = typed(cli, args, "--input", str(items), *at(first))
    assert stopped_line(result) == "stopped: budget reached: calls 3 of 3"
    assert first.count("mapper") == 3
    with LoopbackServer(demo_responder) as second:
        resumed = typed(cli, "resume mr --max-calls 50", *at(second))
    assert resumed.exit_code == 0, resumed.stderr
    assert second.count("mapper") == 5


def test_a_sub_cent_cost_limit_is_shown_as_given():
    budget = Budget(max_cost=0.005, cost=0.006)
    with pytest.raises(BudgetExceeded) as stop:
        budget.check()
    # "$0.0060 of $0.01" would read as under budget.
    assert re.search(r"of \$0\.005", str(stop.value)), str(stop.value)


@pytest.mark.parametrize(
    ("flag", "value"), [("--max-calls", "1"), ("--max-tokens", "1"), ("--max-cost", "0.0001")]
)
def test_the_resume_hint_names_the_budget_that_was_reached(cli, tmp_path, monkeypatch, flag, value):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"demo": [1000.0, 1000.0]}))
    monkeypatch.setenv("PLAIT_PRICES", str(prices))
    result = cli("run", "review", "t", "--model", "demo", flag, value, "--thread", "h")
    assert stopped_line(result).startswith(f"stopped: budget reached: {flag[6:]}")
    [hint] = [line for line in result.stderr.splitlines() if "plait resume h" in line]
    assert flag in hint, hint


def test_threads_show_reports_spend_per_agent(cli, priced):
    with LoopbackServer(demo_responder) as server:
        done = typed(cli, "run review t --thread spend", *at(server))
    assert done.exit_code == 0, done.stderr
    table = cli("threads", "show", "spend").stdout
    header = next(line for line in table.splitlines() if line.startswith("agent"))
    assert "cost" in header, table


def test_resume_in_the_same_process_and_endpoint(db):
    # A Python user's script: asyncio.run(run(...)), then asyncio.run(resume(...)) on the same
    # endpoint. langchain-openai caches its httpx AsyncClient per (base_url, timeout) for the
    # whole process (langchain-ai/langchain#35783), so the second event loop gets a pooled
    # connection of the first, closed one: "RuntimeError: Event loop is closed".
    with LoopbackServer(demo_responder) as server:
        settings = RunSettings(model="openai:m", base_url=server.base_url, max_calls=3)
        with pytest.raises(BudgetStopped) as stop:
            asyncio.run(run("review", "t", settings=settings, db=db))
        outcome = asyncio.run(resume(stop.value.thread_id, db=db, overrides={"max_calls": 50}))
    assert outcome.status == "done"
    assert server.count() == REVIEW_CALLS

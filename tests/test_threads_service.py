"""The ``Threads`` service from Python: what `plait threads show|history|log|fork|prune|delete`
print, as values, and `run`/`resume` on the service's database."""

from __future__ import annotations

import asyncio
import json

import pytest

from plait.checkpoints.threads import ThreadStatus
from plait.errors import ThreadError, UsageError
from plait.threads import Threads, ThreadView


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result.stdout


@pytest.fixture
def threads(db) -> Threads:
    service = Threads(db)
    outcome = asyncio.run(service.run("pipeline", "summarise CAP", thread_id="beta"))
    assert outcome.status == ThreadStatus.DONE
    return service


def test_status_is_stored_and_printed_as_its_value():
    assert ThreadStatus.DONE == "done"
    assert json.dumps({"status": ThreadStatus.WAITING}) == '{"status": "waiting"}'
    assert [str(s) for s in ThreadStatus] == [
        "running",
        "done",
        "failed",
        "interrupted",
        "waiting",
        "budget",
        "rejected",
        "forked",
    ]


def test_show_returns_the_record_and_the_state_the_cli_prints(cli, threads):
    view = asyncio.run(threads.show("beta"))
    assert isinstance(view, ThreadView)
    assert view.status is ThreadStatus.DONE
    assert view.record.graph == "pipeline" and view.record.task == "summarise CAP"
    assert view.result and view.result == view.values["result"]
    assert view.usage and view.record.tokens > 0
    assert view.errors == {}
    assert json.loads(ok(cli("threads", "show", "beta", "--json"))) == json.loads(
        json.dumps(view.as_json(), default=str)
    )


def test_list_filters_by_status_and_refuses_an_unknown_one(threads):
    assert [r.thread_id for r in asyncio.run(threads.list())] == ["beta"]
    assert [r.thread_id for r in asyncio.run(threads.list(status="done"))] == ["beta"]
    assert asyncio.run(threads.list(status=ThreadStatus.FAILED)) == []
    with pytest.raises(UsageError, match="unknown status 'finished'; choose one of running, done"):
        asyncio.run(threads.list(status="finished"))


def test_history_and_log_are_what_the_cli_prints(cli, threads):
    rows = asyncio.run(threads.history("beta"))
    assert rows and rows[0]["step"] == max(r["step"] or 0 for r in rows)  # newest first
    assert rows[-1]["source"] == "input"
    assert json.loads(ok(cli("threads", "history", "beta", "--json"))) == rows
    envelopes = asyncio.run(threads.log("beta"))
    assert envelopes and [e["ts"] for e in envelopes] == sorted(e["ts"] for e in envelopes)
    assert json.loads(ok(cli("threads", "log", "beta", "--json"))) == envelopes


def test_unknown_threads_are_refused_by_name(threads):
    for call in (threads.show, threads.history, threads.log, threads.delete):
        with pytest.raises(ThreadError, match="no thread 'nope'"):
            asyncio.run(call("nope"))
    assert asyncio.run(threads.get("nope")) is None


def test_fork_then_resume_the_fork(threads):
    rows = asyncio.run(threads.history("beta"))
    created = asyncio.run(threads.fork("beta", rows[-2]["checkpoint"], new_thread_id="gamma"))
    assert created == "gamma"
    record = asyncio.run(threads.get("gamma"))
    assert record is not None and record.status is ThreadStatus.FORKED
    outcome = asyncio.run(threads.resume("gamma"))
    assert outcome.status == "done" and outcome.result
    assert asyncio.run(threads.show("beta")).status is ThreadStatus.DONE  # left as it was


def test_prune_takes_an_age_as_text_and_delete_removes_a_thread(threads):
    report = asyncio.run(threads.prune(older_than="1d"))
    assert report.threads == []
    report = asyncio.run(threads.prune(status="done", dry_run=True))
    assert report.threads == ["beta"] and report.checkpoints > 0
    with pytest.raises(UsageError, match="--older-than takes a number"):
        asyncio.run(threads.prune(older_than="soon"))
    asyncio.run(threads.delete("beta"))
    assert asyncio.run(threads.list()) == []
    assert threads.path.is_file()

"""Every bad input the CLI can get: one line on stderr, its documented exit code, no traceback,
and the threads already saved in the database untouched."""

from __future__ import annotations

import json
import sqlite3

import pytest

from plait.errors import ExitCode
from plait.testing import LoopbackServer, status


@pytest.fixture
def saved_thread(cli, db) -> dict:
    done = cli("run", "review", "keep me", "--json", "--thread", "keeper")
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


def assert_one_line_error(result, code: int, *phrases: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def assert_intact(cli, db, saved: dict, threads: int = 1) -> None:
    shown = cli("threads", "show", "keeper", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["result"] == saved["result"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (count,) = conn.execute("SELECT count(*) FROM plait_threads").fetchone()
    assert count == threads  # a refused command creates no thread


USAGE_CASES = {
    "unknown graph": (["run", "nosuch", "t"], ["unknown graph 'nosuch'", "review, orchestrator"]),
    "unknown option": (
        ["run", "review", "t", "--set", "speed=9"],
        ["no option 'speed'", "max_iterations (an int)"],
    ),
    "bad option value": (
        ["run", "review", "t", "--set", "max_iterations=lots"],
        ["'max_iterations' takes an int", "'lots'"],
    ),
    "option below minimum": (["run", "review", "t", "--set", "max_iterations=0"], ["at least 1"]),
    "bad choice": (
        ["run", "orchestrator", "t", "--set", "on_branch_error=ignore"],
        ["fail, continue"],
    ),
    "set without =": (["run", "review", "t", "--set", "max_iterations"], ["key=value"]),
    "malformed model": (
        ["run", "review", "t", "--model", "gpt4"],
        ["cannot tell which provider serves model 'gpt4'", "PROVIDER:gpt4"],
    ),
    "malformed model-for": (["run", "review", "t", "--model-for", "planner"], ["ROLE=SPEC"]),
    "openai without key": (
        ["run", "review", "t", "--model", "openai:gpt-4o-mini"],
        ["OPENAI_API_KEY", "--base-url"],
    ),
    "unknown provider": (["run", "review", "t", "--model", "nosuchprovider:m"], ["nosuchprovider"]),
    "empty task": (["run", "review", "   "], ["task is empty"]),
    "missing graph file": (["run", "./nowhere.py:build", "t"], ["'./nowhere.py' does not exist"]),
    "missing attribute": (
        ["run", "examples/critique.py:nothing", "t"],
        ["no attribute 'nothing'", "build"],
    ),
    "missing module": (
        ["run", "no_such_pkg.graphs:build", "t"],
        ["cannot import module 'no_such_pkg.graphs'"],
    ),
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_usage_errors(cli, db, saved_thread, case):
    args, phrases = USAGE_CASES[case]
    assert_one_line_error(cli(*args), ExitCode.USAGE, *phrases)
    assert_intact(cli, db, saved_thread)


def test_resume_unknown_thread(cli, db, saved_thread):
    assert_one_line_error(cli("resume", "nope"), ExitCode.THREAD, "no thread 'nope'")
    assert_intact(cli, db, saved_thread)


def test_resume_finished_thread(cli, db, saved_thread):
    assert_one_line_error(cli("resume", "keeper"), ExitCode.THREAD, "already finished")
    assert_intact(cli, db, saved_thread)


def test_threads_show_unknown(cli):
    assert_one_line_error(cli("threads", "show", "nope"), ExitCode.THREAD, "no thread 'nope'")


def test_threads_list_unknown_status(cli):
    assert_one_line_error(cli("threads", "--status", "sleepy"), ExitCode.USAGE, "running, done")


def test_database_path_is_a_directory(cli, tmp_path):
    result = cli("run", "review", "t", "--db", str(tmp_path), with_db=False)
    assert_one_line_error(result, ExitCode.DATABASE, "is a directory")


def test_database_file_is_not_sqlite(cli, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my precious notes\n")
    result = cli("run", "review", "t", "--db", str(notes), with_db=False)
    assert_one_line_error(result, ExitCode.DATABASE, "not a SQLite database")
    assert notes.read_text() == "my precious notes\n"


def test_database_cannot_be_created(cli):
    # /proc refuses new files even to root, so this holds whoever runs the tests.
    result = cli("run", "review", "t", "--db", "/proc/plait-test/plait.db", with_db=False)
    assert_one_line_error(result, ExitCode.DATABASE, "/proc/plait-test/plait.db")


ENDPOINT_CASES = {
    "401": ([status(401)], 1, "HTTP 401"),
    "404 model": ([status(404, body={"error": {"message": "model 'x' not found"}})], 1, "HTTP 404"),
    "429 after retries": ([status(429, headers={"retry-after-ms": "1"})] * 3, 3, "HTTP 429"),
    "500 after retries": ([status(500, headers={"retry-after-ms": "1"})] * 3, 3, "HTTP 500"),
}


@pytest.mark.parametrize("case", list(ENDPOINT_CASES))
def test_endpoint_failures_fail_the_run_resumably(cli, db, saved_thread, case):
    replies, expected_requests, phrase = ENDPOINT_CASES[case]
    with LoopbackServer({"researcher": replies}) as server:
        result = cli(
            "run",
            "review",
            "t",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            "--thread",
            "flaky",
        )
        assert server.count("researcher") == expected_requests
    assert_one_line_error(result, ExitCode.FAILED, "researcher", phrase)
    assert "plait resume flaky" in result.stderr
    shown = json.loads(cli("threads", "show", "flaky", "--json").stdout)
    assert shown["status"] == "failed" and phrase in shown["error"]

    with LoopbackServer(
        {
            "researcher": ["facts"],
            "outliner": ["o"],
            "writer": ["w"],
            "reviewer": ['{"approved": true, "feedback": ""}'],
        }
    ) as healthy:
        resumed = cli("resume", "flaky", "--base-url", healthy.base_url, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"] == "w"
    assert_intact(cli, db, saved_thread, threads=2)


def test_unreachable_endpoint(cli, db, saved_thread):
    # Port 9 (discard) is closed on loopback; the client's own retries still end in one error.
    result = cli("run", "review", "t", "--model", "openai:m", "--base-url", "http://127.0.0.1:9/v1")
    assert_one_line_error(result, ExitCode.FAILED, "cannot reach the model endpoint")
    assert_intact(cli, db, saved_thread, threads=2)

"""Inputs are bounded and checked before anything is stored: an oversized or binary --input, a
huge or non-UTF-8 task, a --model-for role the graph never asks, a fork edit of the wrong type
and a pool that names itself are each one line on stderr with exit code 2, no thread is
created, and the threads already saved stay intact and resumable.

Limits are made small through their variables, so no test writes a large file."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from plait import PlaitContext, run
from plait.errors import ExitCode, UsageError
from plait.graphs.registry import GRAPHS, graph_roles
from plait.runner import RunFailed, fork
from plait.settings import RunSettings
from plait.testing import LoopbackServer, status
from test_bad_input import assert_intact, assert_one_line_error, saved_thread  # noqa: F401

USAGE = ExitCode.USAGE


@pytest.fixture
def saved(cli, saved_thread) -> dict:  # noqa: F811
    """The finished thread `keeper` (returned) and `paused`, waiting before `write`."""
    waiting = cli("run", "review", "pause me", "--thread", "paused", "--approve-before", "write")
    assert waiting.exit_code == ExitCode.WAITING, waiting.stderr
    return saved_thread


def assert_untouched(cli, db, saved: dict) -> None:
    """No thread was created, `keeper` is as it was, and `paused` still resumes to the end."""
    assert_intact(cli, db, saved, threads=2)
    resumed = cli("resume", "paused", "--approve", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "done"


def thread_ids(cli) -> list[str]:
    listed = cli("threads", "--json")
    assert listed.exit_code == 0, listed.stderr
    return sorted(t["thread_id"] for t in json.loads(listed.stdout))


# --- 1. --input: a size limit checked before reading, no binary, progress while splitting ---


def test_input_over_the_limit_is_refused_without_reading_it(cli, db, saved, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_INPUT_BYTES", "100")
    big = tmp_path / "big.txt"
    big.write_text("line\n" * 21)  # 105 bytes
    opened = []
    real_open = Path.open
    monkeypatch.setattr(
        Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k)
    )
    result = cli("run", "map-reduce", "Summarise each", "--input", str(big))
    assert_one_line_error(result, USAGE, "--input", "105 bytes", "100", "PLAIT_MAX_INPUT_BYTES")
    assert big not in opened  # refused on its size alone
    monkeypatch.undo()
    assert_untouched(cli, db, saved)


def test_input_at_the_limit_is_read(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_INPUT_BYTES", "100")
    exact = tmp_path / "exact.txt"
    exact.write_text("item\n" * 20)  # 100 bytes
    done = cli("run", "map-reduce", "Summarise each", "--input", str(exact), "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "done"


@pytest.mark.parametrize(
    ("content", "phrases"),
    [
        (b"apple\n\x00\x01\x02banana\n", ["is binary", "NUL byte"]),
        (b"apple\n\xff\xfebanana\n", ["is not valid UTF-8", "0xff at offset 6"]),
    ],
    ids=["nul byte", "not utf-8"],
)
def test_binary_input_is_refused(cli, db, saved, tmp_path, content, phrases):
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    result = cli("run", "map-reduce", "Summarise each", "--input", str(path))
    assert_one_line_error(result, USAGE, "--input", *phrases)
    assert_untouched(cli, db, saved)


async def test_python_callers_get_the_input_limit_too(db, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_INPUT_BYTES", "10")
    with pytest.raises(UsageError, match="the input is 11 bytes.*PLAIT_MAX_INPUT_BYTES"):
        await run("map-reduce", "each", db=db, input="a\nb\nc\nd\nefg")
    assert not Path(db).exists()  # refused before the database was opened


def test_map_reduce_says_how_many_items_it_split(cli, tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("apple\nbanana\ncherry\n")
    done = cli("run", "map-reduce", "Describe each", "--input", str(items))
    assert done.exit_code == 0, done.stderr
    assert "note: split the input into 3 items to map" in done.stderr
    quiet = cli("run", "map-reduce", "Describe each", "--input", str(items), "--quiet")
    assert "split" not in quiet.stderr


# --- 2. a huge task is refused, from argv, from stdin and from Python -------------------------


def test_task_over_the_limit_is_refused(cli, db, saved, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_TASK_BYTES", "10")
    result = cli("run", "review", "é" * 6)  # 6 characters, 12 bytes: bytes are what is stored
    assert_one_line_error(result, USAGE, "the task is 12 bytes", "PLAIT_MAX_TASK_BYTES")
    assert_untouched(cli, db, saved)


def test_task_on_stdin_over_the_limit_is_refused(cli, db, saved, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_TASK_BYTES", "10")
    result = cli("run", "review", "-", input="x" * 1000)
    assert_one_line_error(result, USAGE, "the task on stdin is more than 10", "limit of 10")
    assert_untouched(cli, db, saved)


def test_task_at_the_limit_runs(cli, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_TASK_BYTES", "10")
    assert cli("run", "review", "x" * 10).exit_code == 0
    assert cli("run", "review", "-", input="y" * 10).exit_code == 0


async def test_python_callers_get_the_task_limit_too(db, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_TASK_BYTES", "1000")
    with pytest.raises(UsageError, match="the task is 1,001 bytes.*PLAIT_MAX_TASK_BYTES"):
        await run("review", "x" * 1001, db=db)
    assert not Path(db).exists()


def test_a_bad_limit_variable_is_a_usage_error(cli, monkeypatch):
    monkeypatch.setenv("PLAIT_MAX_TASK_BYTES", "1MB")
    result = cli("run", "review", "t")
    assert_one_line_error(result, USAGE, "PLAIT_MAX_TASK_BYTES", "whole number", "'1MB'")


# --- 3. a task that is not UTF-8 -------------------------------------------------------------


def test_undecodable_argv_task_is_a_usage_error(cli, db, saved):
    # What Python makes of the bytes \xff\xfe in argv: lone surrogates.
    task = b"caf\xff\xfe".decode("utf-8", "surrogateescape")
    assert_one_line_error(cli("run", "review", task), USAGE, "the task is not valid UTF-8")
    assert_untouched(cli, db, saved)


def test_undecodable_stdin_task_is_a_usage_error(cli, db, saved):
    result = cli("run", "review", "-", input=b"caf\xff\xfe task")
    assert_one_line_error(result, USAGE, "the task is not valid UTF-8")
    assert_untouched(cli, db, saved)


@pytest.mark.parametrize("how", ["argv", "stdin"])
def test_undecodable_task_in_a_real_process(db, how):
    bad = b"caf\xff\xfe task"
    argv = [sys.executable, "-m", "plait", "run", "review", bad if how == "argv" else "-"]
    done = subprocess.run(
        [*argv, "--db", db],
        input=bad if how == "stdin" else b"",
        capture_output=True,
        env={**os.environ, "PLAIT_DEBUG": ""},
        timeout=60,
    )
    stderr = done.stderr.decode()
    assert done.returncode == USAGE, stderr
    assert stderr.splitlines() == ["error: the task is not valid UTF-8; give it as UTF-8 text"]
    assert not Path(db).exists()


# --- 4. a --model-for role the graph never asks ----------------------------------------------


def test_unknown_model_for_role_is_refused_with_the_roles(cli, db, saved):
    result = cli("run", "review", "t", "--model-for", "reviewr=demo")
    assert_one_line_error(
        result,
        USAGE,
        "no role 'reviewr'",
        "outliner, researcher, reviewer, reviser, writer",
    )
    assert_untouched(cli, db, saved)


def test_model_for_roles_follow_the_options(cli):
    roster = ("--set", "roster=coder,writer")
    ok = cli("run", "orchestrator", "t", *roster, "--model-for", "coder=demo")
    assert ok.exit_code == 0, ok.stderr
    refused = cli("run", "orchestrator", "t", *roster, "--model-for", "analyst=demo")
    assert_one_line_error(refused, USAGE, "no role 'analyst'", "coder, planner, synthesizer")
    debate = cli("run", "debate", "t", "--set", "debaters=2", "--model-for", "debater_3=demo")
    assert_one_line_error(debate, USAGE, "no role 'debater_3'", "debater_1, debater_2, judge")


def test_roles_of_an_authored_graph_are_not_checked(cli):
    done = cli("run", "examples/critique.py:build", "t", "--model-for", "anyone=demo")
    assert done.exit_code == 0, done.stderr


def test_config_file_roles_are_not_checked(cli, tmp_path):
    # One plait.toml serves every graph: a planner there is no typo when running review.
    config = tmp_path / "plait.toml"
    config.write_text('[roles]\nplanner = "demo"\n')
    done = cli("run", "review", "t", "--config", str(config))
    assert done.exit_code == 0, done.stderr


# Each graph run with the demo model under options that reach its optional roles: a spec stage
# that fails over to its fallback, blackboard conflicts settled by the merger or controller.
SPEC = [{"name": "draft", "require": "NEVER MATCHES", "fallback": "rescuer"}]
CLASH = [
    {"name": "north", "needs": [], "writes": "solution"},
    {"name": "south", "needs": [], "writes": "solution"},
]
ROLE_RUNS = {
    "review": {},
    "orchestrator": {"roster": ["coder", "writer"]},
    "dag": {},
    "pipeline": {"stages": ["extract", "summarize"]},
    "pipeline spec": {"spec": "SPEC", "attempts": 1},
    "blackboard": {},
    "blackboard merge": {"sources": CLASH, "conflict_policy": "merge"},
    "blackboard escalate": {"sources": CLASH, "conflict_policy": "escalate"},
    "auction": {},
    "auction decompose": {"decompose": True, "fallback": "writer"},
    "supervisor": {"specialists": ["research", "code"]},
    "router": {},
    "swarm": {},
    "debate": {"positions": ["yes", "no"]},
    "perspectives": {"perspectives": ["Legal", "ux"]},
    "consensus": {"voters": 2},
    "map-reduce": {},
}
# Graphs whose model picks which of the declared roles run (a plan, a route, a handoff).
CHOSEN_BY_A_MODEL = {"orchestrator", "dag", "supervisor", "router", "swarm"}


@pytest.mark.parametrize("case", list(ROLE_RUNS))
async def test_every_role_a_graph_asks_is_one_model_for_accepts(case, db, tmp_path, monkeypatch):
    name = case.split()[0]
    options = dict(ROLE_RUNS[case])
    if options.get("spec") == "SPEC":
        (tmp_path / "spec.json").write_text(json.dumps(SPEC))
        options["spec"] = str(tmp_path / "spec.json")
    asked: set[str] = set()
    real = PlaitContext.model_for_role
    monkeypatch.setattr(
        PlaitContext,
        "model_for_role",
        lambda self, role: asked.add(role) or real(self, role),
    )
    try:
        await run(
            name,
            "Explain the CAP theorem",
            settings=RunSettings(options=options),
            db=db,
            input="apple\nbanana" if GRAPHS[name].reads_input else None,
        )
    except RunFailed:
        assert case == "pipeline spec"  # no fallback output matches either; its roles ran
    assert asked, "the graph asked no model"
    declared = graph_roles(name, options)
    assert asked <= declared, f"asked but not accepted by --model-for: {asked - declared}"
    if name not in CHOSEN_BY_A_MODEL:  # and nothing is accepted that the graph never asks
        assert asked == declared


def test_every_prebuilt_graph_has_roles():
    assert all(graph_roles(name, {}) for name in GRAPHS)


# --- 5. fork --set values are checked against the state's types ------------------------------


@pytest.fixture
def planned(cli) -> str:
    """A finished orchestrator thread and its checkpoint before the workers ran."""
    done = cli("run", "orchestrator", "design x", "--thread", "orch")
    assert done.exit_code == 0, done.stderr
    rows = json.loads(cli("threads", "history", "orch", "--json").stdout)
    return [r["checkpoint"] for r in rows if r["next"] == ["synthesizer"]][-1]


@pytest.mark.parametrize(
    ("edit", "phrases"),
    [
        ("subtasks={not json", ["'subtasks' takes list[Subtask]", "'{not json'", "valid list"]),
        ("subtasks=null", ["'subtasks' takes list[Subtask]", "got None"]),
        ('subtasks=[{"id": "a"}]', ["'subtasks'", "Field required at 0.role"]),
        ("result=42", ["'result' takes str", "got 42", "quote"]),
        ("usage=[]", ["'usage' takes dict[str, AgentUsage]"]),
    ],
    ids=["not json", "null", "missing field", "number for text", "wrong container"],
)
def test_fork_edit_of_the_wrong_type_creates_no_thread(cli, db, planned, edit, phrases):
    before = cli("threads", "--json").stdout
    result = cli("threads", "fork", "orch", "--checkpoint", planned, "--set", edit)
    assert_one_line_error(result, USAGE, *phrases)
    assert cli("threads", "--json").stdout == before
    with closing(sqlite3.connect(db)) as conn:
        owners = {t for (t,) in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert owners == {"orch"}  # no orphan checkpoints either


def test_a_fork_that_fails_after_copying_leaves_no_thread(cli, db, planned, monkeypatch):
    from langgraph.graph.state import CompiledStateGraph

    async def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(CompiledStateGraph, "aupdate_state", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        asyncio.run(fork("orch", planned, db=db, new_thread_id="half", edits={"result": "x"}))
    monkeypatch.undo()
    assert thread_ids(cli) == ["orch"]
    with closing(sqlite3.connect(db)) as conn:
        assert not conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = 'half'").fetchall()


def test_fork_edit_of_the_right_type_resumes(cli, planned):
    subtasks = json.dumps([{"id": "only", "role": "coder", "description": "write it"}])
    forked = cli(
        "threads", "fork", "orch", "-c", planned, "--set", f"subtasks={subtasks}", "--json"
    )
    assert forked.exit_code == 0, forked.stderr
    new_id = json.loads(forked.stdout)["thread_id"]
    resumed = cli("resume", new_id, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "done"
    assert thread_ids(cli) == sorted(["orch", new_id])


# --- 6. a pool that names itself --------------------------------------------------------------


def test_a_pool_file_naming_itself_is_refused(cli, db, saved, tmp_path):
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps({"members": [{"model": f"pool:{pool}"}]}))
    for flag in (["--model", f"pool:{pool}"], ["--model-for", f"writer=pool:{pool}"]):
        result = cli("run", "review", "t", *flag)
        assert_one_line_error(result, USAGE, str(pool), "pools do not nest")
    assert_untouched(cli, db, saved)


def test_resume_refuses_an_unknown_model_for_role_and_leaves_the_thread(cli, db):
    with LoopbackServer({"researcher": [status(500, headers={"retry-after-ms": "1"})] * 3}) as s:
        failed = cli(
            "run",
            "review",
            "t",
            "--model",
            "openai:m",
            "--base-url",
            s.base_url,
            "--thread",
            "r",
            "--set",
            "retries=2",
        )
    assert failed.exit_code == 1
    typo = cli("resume", "r", "--model-for", "reviewr=demo")
    assert typo.exit_code == 2
    assert "no role 'reviewr'" in typo.stderr and "reviewer" in typo.stderr
    assert json.loads(cli("threads", "show", "r", "--json").stdout)["status"] == "failed"
    assert cli("resume", "r", "--model", "demo").exit_code == 0

"""The CLI as a user types it: `plait threads` and its verbs, `plait graphs`, `plait --help`, and
what `plait run` puts on stdout and stderr. JSON output is parsed, not matched as text."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sqlite3
from contextlib import closing

import pytest

from plait import PlaitContext, RunFailed, run
from plait.errors import ExitCode
from plait.graphs.registry import GRAPHS
from plait.testing import LoopbackServer, ScriptedChatModel


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return result.stdout


def as_json(result):
    return json.loads(ok(result))


def sh(cli, line: str, **kwargs):
    """Run a command line as a user types it, e.g. ``'run review "a task" --json'``."""
    return cli(*shlex.split(line), **kwargs)


def row(text: str, first: str) -> list[str]:
    """The cells of the table line that starts with ``first``."""
    (line,) = [line for line in text.splitlines() if line.split()[:1] == [first]]
    return line.split()


def count_rows(db: str, table: str, thread_id: str) -> int:
    with closing(sqlite3.connect(db)) as conn:
        sql = f"SELECT count(*) FROM {table} WHERE thread_id = ?"
        return conn.execute(sql, (thread_id,)).fetchone()[0]


@pytest.fixture
def threads(cli, db) -> dict[str, dict]:
    """Two finished demo threads and one failed one."""
    line = 'run review "explain CAP" --thread alpha --json --set max_iterations=1 --model demo'
    alpha = as_json(sh(cli, line))
    beta = as_json(sh(cli, "run pipeline summarise --thread beta --json"))
    with (
        ScriptedChatModel({"researcher": [RuntimeError("endpoint fell over")]}) as model,
        pytest.raises(RunFailed),
    ):
        asyncio.run(
            run("review", "doomed", db=db, thread_id="broken", context=PlaitContext(model=model))
        )
    return {"alpha": alpha, "beta": beta}


def test_threads_lists_ids_graphs_statuses_and_tokens(cli, threads):
    listed = {t["thread_id"]: t for t in as_json(cli("threads", "--json"))}
    assert {k: (t["graph"], t["status"]) for k, t in listed.items()} == {
        "alpha": ("review", "done"),
        "beta": ("pipeline", "done"),
        "broken": ("review", "failed"),
    }
    assert listed["alpha"]["tokens"] == threads["alpha"]["tokens"] > 0
    assert listed["beta"]["tokens"] == threads["beta"]["tokens"] > 0
    assert "endpoint fell over" in listed["broken"]["error"]

    table = ok(cli("threads"))
    assert table.split()[:6] == ["thread", "graph", "task", "status", "updated", "tokens"]
    for thread_id, t in listed.items():
        cells = row(table, thread_id)
        assert cells[1] == t["graph"] and t["status"] in cells
        assert cells[-1] == f"{t['tokens']:,}"


def test_threads_status_filter(cli, threads):
    failed = as_json(cli("threads", "--status", "failed", "--json"))
    assert [t["thread_id"] for t in failed] == ["broken"]
    done = as_json(cli("threads", "--status", "done", "--json"))
    assert sorted(t["thread_id"] for t in done) == ["alpha", "beta"]
    table = ok(cli("threads", "--status", "failed"))
    assert row(table, "broken")[1] == "review"
    assert "alpha" not in table and "beta" not in table


SHOW_KEYS = """thread_id graph task settings status error tokens calls created_at updated_at owner result usage
    errors stop_reason"""


def test_threads_show_settings_usage_and_result(cli, threads):
    shown = as_json(cli("threads", "show", "alpha", "--json"))
    assert sorted(shown) == sorted(SHOW_KEYS.split())
    assert shown["settings"]["model"] == "demo"
    assert shown["settings"]["options"] == {"max_iterations": 1}
    assert shown["result"] == threads["alpha"]["result"]
    assert shown["usage"] == threads["alpha"]["usage"]

    text = ok(cli("threads", "show", "alpha"))
    lines = text.splitlines()
    assert lines[0] == "alpha · review · done"
    assert "task: explain CAP" in lines and "model: demo" in lines
    assert "options: max_iterations=1" in lines
    for agent, usage in shown["usage"].items():
        cells = row(text, agent)
        counts = [usage["calls"], usage["input_tokens"], usage["output_tokens"]]
        assert cells[:4] == [agent, *(f"{n:,}" for n in counts)]
        assert cells[-1] == f"demo×{usage['calls']}"
    assert f"stopped: {shown['stop_reason']}" in lines
    assert text.rstrip("\n").endswith("\n\n" + shown["result"])


def test_threads_show_a_failed_thread_gives_its_error(cli, threads):
    shown = as_json(cli("threads", "show", "broken", "--json"))
    assert shown["status"] == "failed" and shown["result"] is None
    assert "error: model call for 'researcher' failed" in ok(cli("threads", "show", "broken"))


def test_threads_history_newest_first_with_node_names(cli, threads):
    rows = as_json(cli("threads", "history", "alpha", "--json"))
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == len(steps)
    assert steps[-1] == -1 and rows[-1]["source"] == "input"
    nodes = {"research", "outline", "write", "review", "finalize"}
    assert {n for r in rows for n in r["next"]} == nodes
    assert {"research", "outline", "draft", "result"} <= {w for r in rows for w in r["wrote"]}
    assert rows[0]["wrote"] == ["result", "stop_reason"] and rows[0]["next"] == []
    assert len({r["checkpoint"] for r in rows}) == len(rows)

    text = ok(cli("threads", "history", "alpha"))
    data = [line.split()[0] for line in text.splitlines()[1:] if re.match(r"-?\d+ ", line)]
    assert data == [str(s) for s in steps]


def test_threads_delete_removes_the_thread_and_its_checkpoints(cli, db, threads):
    assert count_rows(db, "checkpoints", "alpha") > 0
    assert ok(cli("threads", "delete", "alpha")).strip() == "deleted thread alpha"
    assert cli("threads", "show", "alpha").exit_code == ExitCode.THREAD
    assert cli("threads", "delete", "alpha").exit_code == ExitCode.THREAD
    assert count_rows(db, "checkpoints", "alpha") == count_rows(db, "writes", "alpha") == 0
    assert count_rows(db, "checkpoints", "beta") > 0  # other threads untouched
    assert [t["thread_id"] for t in as_json(cli("threads", "--json"))].count("alpha") == 0


def test_threads_path_honours_db_then_plait_db_then_xdg(cli, monkeypatch, isolated):
    xdg = isolated / "data" / "plait" / "plait.db"
    assert ok(cli("threads", "path", with_db=False)) == f"{xdg}\n"
    monkeypatch.setenv("PLAIT_DB", str(isolated / "env.db"))
    assert ok(cli("threads", "path", with_db=False)) == f"{isolated / 'env.db'}\n"
    flagged = cli("threads", "path", "--db", str(isolated / "flag.db"), with_db=False)
    assert ok(flagged) == f"{isolated / 'flag.db'}\n"


def test_graphs_lists_every_registered_graph(cli):
    text = ok(cli("graphs"))
    first_cells = {line.split()[0] for line in text.splitlines() if line.strip()}
    assert set(GRAPHS) <= first_cells
    assert [g["name"] for g in as_json(cli("graphs", "--json"))] == list(GRAPHS)


def test_graphs_show_ascii_draws_boxes(cli):
    text = ok(cli("graphs", "show", "review", "--ascii"))
    for node in ("__start__", "research", "outline", "write", "review", "revise", "finalize"):
        assert re.search(rf"\| {node} +\|", text), node
    assert re.search(r"\+-{5,}\+", text)
    assert "graph TD" not in text and "-->" not in text


def test_help_documents_every_exit_code(cli):
    text = ok(cli("--help"))
    documented = text.split("Exit codes:", 1)[1].split("Options:", 1)[0]
    codes = {int(code) for code in re.findall(r"(?:^|· |\s)(\d+) [a-z]", documented)}
    assert codes == {int(code) for code in ExitCode}


def test_run_puts_the_result_alone_on_stdout_and_progress_on_stderr(cli):
    done = cli("run", "review", "explain CAP", "--thread", "t1")
    shown = as_json(cli("threads", "show", "t1", "--json"))
    assert ok(done) == shown["result"] + "\n"
    assert "running review · thread t1" in done.stderr
    assert "done: finalize" in done.stderr
    assert f"thread t1 · done · {shown['tokens']:,} tokens" in done.stderr


def test_quiet_run_prints_nothing_on_stderr(cli):
    done = cli("run", "review", "explain CAP", "--quiet")
    assert ok(done).startswith("[demo]")
    assert done.stderr == ""


def test_the_demo_notice_only_when_no_model_is_configured(cli, monkeypatch):
    notice = "note: no model configured"
    assert notice in cli("run", "pipeline", "t").stderr
    assert notice not in cli("run", "pipeline", "t", "--model", "demo").stderr
    monkeypatch.setenv("PLAIT_MODEL", "demo")
    assert notice not in cli("run", "pipeline", "t").stderr


def test_thread_names_the_thread(cli):
    done = as_json(cli("run", "pipeline", "t", "--thread", "my-run", "--json"))
    assert done["thread_id"] == "my-run"
    assert as_json(cli("threads", "show", "my-run", "--json"))["task"] == "t"


REPLIES = {
    "researcher": ["r"],
    "outliner": ["o"],
    "writer": ["w"],
    "reviewer": ["see [note] here"] * 3,
}


@pytest.fixture
def bracketed_failure(cli):
    """A run that fails on a reply with square brackets, which rich would take for markup."""
    with LoopbackServer(REPLIES) as server:
        failed = sh(cli, f"run review t --model openai:m --base-url {server.base_url} --thread f")
    assert failed.exit_code == ExitCode.FAILED
    assert "plait resume f" in failed.stderr
    return failed


def test_a_failed_run_shows_the_error_text_verbatim(bracketed_failure):
    assert "it returned 'see [note] here'" in bracketed_failure.stderr


def test_threads_show_gives_the_error_text_verbatim(cli, bracketed_failure):
    assert "it returned 'see [note] here'" in ok(cli("threads", "show", "f"))


def test_a_task_with_square_brackets_is_listed_verbatim(cli):
    ok(cli("run", "pipeline", "Fix [auth] in [/] tests", "--thread", "b", "-q"))
    assert "Fix [auth] in [/] tests" in ok(cli("threads"))

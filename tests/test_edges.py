"""Edges found in review: odd inputs get clear errors, and no paid-for work is lost."""

from __future__ import annotations

import json
import sqlite3

import pytest

from plait import PlaitContext, RunFailed, RunSettings, resume, run
from plait.errors import ExitCode
from plait.models.spec import load_chat_model
from plait.testing import LoopbackServer, text

BID = json.dumps(
    {"willing": True, "capable": True, "capability_score": 0.5, "cost": 1, "estimated_time": 2}
)


def one_line_error(result, code: int, phrase: str) -> None:
    assert result.exit_code == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and phrase in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("thread", ["", "a b", "x[/]y", "t" * 129])
def test_thread_ids_are_checked(cli, thread):
    one_line_error(cli("run", "review", "t", "--thread", thread), ExitCode.USAGE, "thread id")


def test_a_base_url_with_credentials_is_refused(cli):
    url = "http://user:secret@127.0.0.1:9/v1"
    result = cli("run", "review", "t", "--model", "openai:m", "--base-url", url)
    one_line_error(result, ExitCode.USAGE, "must not carry credentials")
    assert "secret" not in result.stderr.replace(url, "")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_float_options_must_be_finite(cli, value):
    one_line_error(cli("run", "review", "t", "--set", f"timeout={value}"), ExitCode.USAGE, "finite")


def test_run_options_of_authored_graphs_are_type_checked(cli):
    result = cli("run", "examples/critique.py:build", "t", "--set", "retries=abc")
    one_line_error(result, ExitCode.USAGE, "'retries' takes an int")


def test_a_factory_that_raises_is_a_usage_error(cli, tmp_path):
    graph = tmp_path / "broken.py"
    graph.write_text("def build():\n    raise ValueError('no such thing')\n")
    one_line_error(cli("run", f"{graph}:build", "t"), ExitCode.USAGE, "building")


def test_a_graph_file_that_exits_at_import_is_a_usage_error(cli, tmp_path):
    graph = tmp_path / "exits.py"
    graph.write_text("import sys\nsys.exit(7)\n")
    one_line_error(cli("run", f"{graph}:build", "t"), ExitCode.USAGE, "SystemExit")


def test_a_graph_file_can_import_the_modules_beside_it(cli, tmp_path):
    (tmp_path / "helper_mod_for_plait.py").write_text("INSTRUCTIONS = 'You are the solo.'\n")
    (tmp_path / "sib.py").write_text(
        "from helper_mod_for_plait import INSTRUCTIONS\n"
        "from langgraph.graph import END, START, StateGraph\n"
        "from plait import CommonState, PlaitContext, agent_node\n"
        "def build():\n"
        "    b = StateGraph(CommonState, context_schema=PlaitContext)\n"
        "    b.add_node('solo', agent_node('solo', INSTRUCTIONS, writes='result'))\n"
        "    b.add_edge(START, 'solo')\n"
        "    b.add_edge('solo', END)\n"
        "    return b\n"
    )
    done = cli("run", f"{tmp_path / 'sib.py'}:build", "t")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("[demo] canned solo output")


def test_a_relative_pool_file_is_found_again_on_resume(cli, tmp_path, monkeypatch):
    (tmp_path / "pool.json").write_text(json.dumps({"members": [{"model": "demo"}]}))
    monkeypatch.chdir(tmp_path)
    done = cli("run", "pipeline", "t", "--model", "pool:pool.json", "--thread", "p", "--json")
    assert done.exit_code == 0, done.stderr
    stored = json.loads(cli("threads", "show", "p", "--json").stdout)["settings"]["model"]
    assert stored == f"pool:{tmp_path / 'pool.json'}"


def test_prune_of_old_checkpoints_keeps_the_full_log(cli):
    assert cli("run", "review", "t", "--thread", "r").exit_code == 0
    before = json.loads(cli("threads", "log", "r", "--json").stdout)
    assert cli("threads", "prune", "--status", "done", "--checkpoints").exit_code == 0
    assert json.loads(cli("threads", "log", "r", "--json").stdout) == before


async def test_a_structured_output_failure_lets_slower_branches_land(db):
    # The researcher never bids validly; the others answer later. Their bids, already paid
    # for, must be saved before the run stops, so the resume asks only the researcher again.
    script = {
        "researcher": ["no idea"] * 3,
        "analyst": [text(BID, delay=0.3)],
        "writer": [text(BID, delay=0.3)],
    }
    with LoopbackServer(script) as server:
        settings = RunSettings(model="openai:m", base_url=server.base_url)
        with pytest.raises(RunFailed, match="did not return a valid Bid"):
            await run("auction", "t", db=db, settings=settings, thread_id="a")
        with sqlite3.connect(db) as conn:
            saved = conn.execute(
                "SELECT count(*) FROM writes WHERE thread_id = 'a' AND channel = 'bids'"
            ).fetchone()[0]
        assert saved == 2
        assert server.count("analyst") == 1 and server.count("writer") == 1
        # The resume is served by the demo model; the server must see no further request.
        outcome = await resume("a", db=db, context=PlaitContext(model=load_chat_model("demo")))
    assert outcome.status == "done"
    assert server.count("analyst") == 1 and server.count("writer") == 1


def test_input_is_refused_by_graphs_that_do_not_read_it(cli, tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("a\nb\n")
    result = cli("run", "pipeline", "t", "--input", str(items))
    one_line_error(result, ExitCode.USAGE, "does not read --input (graphs that do: map-reduce)")


def test_resume_can_change_run_options_but_not_the_graphs_own(cli):
    paused = cli("run", "pipeline", "t", "--thread", "p", "--approve-before", "transform")
    assert paused.exit_code == ExitCode.WAITING, paused.stderr
    refused = cli("resume", "p", "--approve", "--set", "stages=a,b")
    one_line_error(refused, ExitCode.USAGE, "run options only")
    done = cli("resume", "p", "--approve", "--set", "timeout=30", "--set", "retries=4")
    assert done.exit_code == 0, done.stderr
    options = json.loads(cli("threads", "show", "p", "--json").stdout)["settings"]["options"]
    assert options == {"timeout": 30.0, "retries": 4}

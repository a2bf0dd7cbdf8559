"""Structured replies through the endpoint's schema channel, end to end: every prebuilt graph and
the authored example run as real `plait run` processes through the real ChatOpenAI client
against a loopback server that reads a schema only from ``response_format`` or a tool, never
from the prompt.

With default settings plait asks by ``json_schema``; an endpoint that refuses it (HTTP 400) is
asked by a forced tool instead, refused once per endpoint per run (even in a fan-out), noted
once on stderr and recorded with the thread, so a resume does not ask again. Pool members and
fallback models each find their own method.

Every subprocess is started at once on a thread pool when the first test asks for a result, so
the file's runtime is about the CPU time of its processes divided by the cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from plait.graphs.registry import GRAPHS
from plait.nodes.agent import STRUCTURED_ATTEMPTS
from plait.nodes.structured import SCHEMA_MARKER
from plait.testing import LoopbackServer, Recorded, schema_responder, status
from processes import env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
AUTHORED = f"{ROOT / 'examples' / 'critique.py'}:build"
REVIEWS = str(ROOT / "examples" / "reviews.txt")
GRAPH_RUNS = [*GRAPHS, AUTHORED]
# The graphs whose default run asks for a structured reply (a plan, vote, decision, route,
# bid, move, review...); the others only ask for text.
STRUCTURED = {
    "review",
    "orchestrator",
    "debate",
    "supervisor",
    "dag",
    "consensus",
    "router",
    "auction",
    "swarm",
}
NOTE = "refused structured output"
TASK = "Decide how to ship the new billing service"
TIMEOUT = 120  # the most one plait process may take; a hang fails the test, not the session
WORKERS = 3  # processes at once: CPU-bound at start-up, waiting on the loopback after


def graph_id(graph: str) -> str:
    return "critique" if graph == AUTHORED else graph


assert STRUCTURED.issubset(GRAPHS), "STRUCTURED names a graph that is not prebuilt"


# --- running plait ------------------------------------------------------------------------


@dataclass
class Where:
    """A job's own directory and the environment its processes get."""

    root: Path
    environ: dict[str, str]

    def db(self, name: str = "plait") -> str:
        return str(self.root / f"{name}.db")


@dataclass
class Proc:
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"not JSON on stdout: {self.stdout!r}\n{self.stderr}") from None

    def explain(self) -> str:
        return f"{' '.join(self.argv[3:6])} exited {self.code}\n{self.stdout}\n{self.stderr}"


@dataclass
class Served:
    """What one endpoint received."""

    base_url: str
    requests: list[Recorded]

    @property
    def key(self) -> str:
        """The endpoint's name in ``settings.methods`` (model ``m``)."""
        return f"m at {self.base_url}"

    def channels(self, *kinds: str) -> Counter[str]:
        """Requests by channel, of replies of ``kinds`` (all, if none given)."""
        return Counter(r.channel for r in self.requests if not kinds or r.kind in kinds)

    def refused(self) -> list[Recorded]:
        return [r for r in self.requests if r.kind == "refused"]


@dataclass
class Job:
    procs: list[Proc] = field(default_factory=list)
    served: dict[str, Served] = field(default_factory=dict)
    db: str = ""

    @property
    def proc(self) -> Proc:
        return self.procs[0]


def plait(where: Where, *args: str) -> Proc:
    argv = [sys.executable, "-m", "plait", *args]
    done = subprocess.run(
        argv,
        cwd=where.root,  # no plait.toml of the repository's or the user's
        env=where.environ,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return Proc(argv, done.returncode, done.stdout, done.stderr)


def run_args(graph: str, base_url: str, db: str) -> list[str]:
    return ["run", graph, TASK, "--model", "openai:m", "--base-url", base_url, "--db", db]


def graph_job(graph: str, responder: Callable[[], Any], where: Where) -> Job:
    """Run ``graph`` once against a fresh server answering with ``responder()``."""
    job = Job(db=where.db())
    extra = ["--input", REVIEWS] if graph == "map-reduce" else []
    # Leaving the block verifies the server: a request its responder could not answer fails.
    with LoopbackServer(responder()) as server:
        job.procs.append(plait(where, *run_args(graph, server.base_url, job.db), *extra, "--json"))
        job.served["server"] = Served(server.base_url, server.requests)
    return job


def resume_job(where: Where) -> Job:
    """review stopped by --max-calls 4 just after the reviewer's first (structured) call,
    then resumed with a larger budget, against one server that refuses json_schema."""
    job = Job(db=where.db())
    with LoopbackServer(schema_responder(refuse_json_schema=True)) as server:
        url = server.base_url
        stopped = plait(where, *run_args("review", url, job.db), "--max-calls", "4", "--json")
        job.procs.append(stopped)
        before = len(server.requests)
        thread = stopped.json.get("thread_id", "")
        job.procs.append(
            plait(where, "resume", thread, "--max-calls", "100", "--json", "--db", job.db)
        )
    job.served["before"] = Served(url, server.requests[:before])
    job.served["after"] = Served(url, server.requests[before:])
    return job


POOL_ROLES = {"a": ["researcher", "writer"], "b": ["analyst"]}  # auction's three bidders


def pool_job(strategy: str, where: Where) -> Job:
    """auction on a two-member pool: ``a`` accepts json_schema, ``b`` refuses it."""
    job = Job(db=where.db())
    with (
        LoopbackServer(schema_responder()) as a,
        LoopbackServer(schema_responder(refuse_json_schema=True)) as b,
    ):
        members = [
            {"model": "openai:m", "base_url": a.base_url, "name": "a"},
            {"model": "openai:m", "base_url": b.base_url, "name": "b"},
        ]
        if strategy == "capability":
            for member in members:
                member["capabilities"] = POOL_ROLES[member["name"]]
        pool = where.root / "pool.json"
        pool.write_text(json.dumps({"strategy": strategy, "members": members}))
        args = ["run", "auction", TASK, "--model", f"pool:{pool}", "--db", job.db, "--json"]
        job.procs.append(plait(where, *args))
        job.served = {"a": Served(a.base_url, a.requests), "b": Served(b.base_url, b.requests)}
    return job


def dead(role: str, body: dict[str, Any]):
    return status(500, headers={"retry-after-ms": "1"})


def fallback_job(refuse: bool, where: Where) -> Job:
    """consensus with a primary that always fails and a fallback profile ``backup`` (model
    ``m2``) on a schema server, refusing json_schema or not."""
    job = Job(db=where.db())
    with (
        LoopbackServer(dead) as primary,
        LoopbackServer(schema_responder(refuse_json_schema=refuse)) as backup,
    ):
        config = where.root / "plait.toml"
        config.write_text(f'[models.backup]\nmodel = "openai:m2"\nbase_url = "{backup.base_url}"\n')
        args = [*run_args("consensus", primary.base_url, job.db), "--json"]
        job.procs.append(plait(where, *args, "--config", str(config), "--fallback-model", "backup"))
        job.served = {
            "primary": Served(primary.base_url, primary.requests),
            "backup": Served(backup.base_url, backup.requests),
        }
    return job


# Started in this order: the longest first, so no job is left running alone at the end.
JOBS: dict[tuple[str, str], Callable[[Where], Job]] = {
    ("resume", "review"): resume_job,
    ("fallback", "accepting"): partial(fallback_job, False),
    ("fallback", "refusing"): partial(fallback_job, True),
    **{("pool", s): partial(pool_job, s) for s in ("round_robin", "least_loaded", "capability")},
    ("json_mode", "review"): partial(
        graph_job, "review", partial(schema_responder, refuse_json_schema=True, refuse_tools=True)
    ),
    **{("default", g): partial(graph_job, g, schema_responder) for g in GRAPH_RUNS},
    # A graph that asks for no structure sends only text (the test of the default run checks
    # it), so a server refusing json_schema could not change its run: only these are re-run.
    **{
        ("refusing", g): partial(graph_job, g, partial(schema_responder, refuse_json_schema=True))
        for g in GRAPH_RUNS
        if g in STRUCTURED
    },
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Callable[[str, str], Job]:
    """``results(scenario, name)``: the finished job; every job starts with the first test."""
    base = tmp_path_factory.mktemp("schema_endpoints")
    environ = {
        **env(),  # no OPENAI_* or PLAIT_* variables: no key, no base URL, no model
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_CONFIG_HOME": str(base / "config"),
    }
    futures: dict[tuple[str, str], Future[Job]] = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        for index, (key, job) in enumerate(JOBS.items()):
            root = base / f"job{index}"
            root.mkdir()
            futures[key] = pool.submit(job, Where(root, environ))
        yield lambda scenario, name: futures[scenario, name].result(timeout=10 * TIMEOUT)


@pytest.fixture
def methods(cli) -> Callable[[Job, str], dict[str, str]]:
    """``methods(job, thread)``: ``settings.methods`` as `plait threads show --json` gives it."""

    def show(job: Job, thread: str) -> dict[str, str]:
        shown = cli("threads", "show", thread, "--json", "--db", job.db)
        assert shown.exit_code == 0, shown.stderr
        return json.loads(shown.stdout)["settings"]["methods"]

    return show


def finished(proc: Proc) -> dict[str, Any]:
    """The --json outcome of a run that must have ended done with a result."""
    assert proc.code == 0, proc.explain()
    out = proc.json
    assert out["status"] == "done", proc.explain()
    assert isinstance(out["result"], str) and out["result"].strip(), out
    return out


def prompts_with_schema(*served: Served) -> list[str]:
    """The roles of requests whose message text carries the schema (plait's in-prompt form)."""
    return [
        r.role
        for s in served
        for r in s.requests
        for m in r.body.get("messages", [])
        if SCHEMA_MARKER in json.dumps(m.get("content"))
    ]


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOTE in line]


# --- 1. default settings: json_schema ----------------------------------------------------


@pytest.mark.parametrize("graph", GRAPH_RUNS, ids=graph_id)
def test_every_graph_completes_through_json_schema(results, methods, graph):
    job = results("default", graph)
    out = finished(job.proc)
    served = job.served["server"]
    assert not served.refused()
    if graph in STRUCTURED:
        # Every structured request went by json_schema and was answered from its schema.
        assert served.channels("text")["json_schema"] > 0, served.channels()
        assert set(served.channels()) <= {"json_schema", "text"}, served.channels()
        structured = [r for r in served.requests if r.channel == "json_schema"]
        # Strict wherever possible, and every schema these graphs ask for can be strict.
        strict = [r.body["response_format"]["json_schema"].get("strict") for r in structured]
        assert strict == [True] * len(structured)
        assert methods(job, out["thread_id"]) == {served.key: "json_schema"}
    else:
        assert set(served.channels()) == {"text"}, served.channels()
        assert methods(job, out["thread_id"]) == {}
    assert prompts_with_schema(served) == []
    assert notes(job.proc.stderr) == []


# --- 2. json_schema refused: one refusal, then tools -------------------------------------


@pytest.mark.parametrize("graph", [g for g in GRAPH_RUNS if g in STRUCTURED])
def test_every_structured_graph_completes_through_tools_after_one_refusal(results, methods, graph):
    job = results("refusing", graph)
    out = finished(job.proc)
    served = job.served["server"]
    # One refusal per endpoint per run, even when a fan-out asks in parallel.
    assert [r.channel for r in served.refused()] == ["json_schema"]
    assert served.channels()["json_schema"] == 1  # never asked that way again
    assert served.channels("tool_call")["tools"] > 0, served.channels()
    assert served.channels("tool_call")["tools"] == served.channels()["tools"]
    assert methods(job, out["thread_id"]) == {served.key: "function_calling"}
    [note] = notes(job.proc.stderr)
    assert note == (
        f"note: {served.key} refused structured output by json_schema (HTTP 400); "
        "using function_calling for the rest of the run"
    )
    assert prompts_with_schema(served) == []


def test_a_refusal_shows_the_user_no_python_warning(results):
    # plait handles the refusal and says so in its own note; langchain-openai's UserWarning
    # ("...specify method='function_calling'") tells the user to do what plait already did.
    job = results("refusing", "review")
    finished(job.proc)
    assert len(notes(job.proc.stderr)) == 1
    assert "Warning" not in job.proc.stderr, job.proc.stderr


# --- 3. json_schema and tools refused: JSON mode cannot satisfy the schema ---------------


def test_json_mode_alone_does_not_satisfy_a_schema_and_the_run_fails_in_one_line(results, methods):
    job = results("json_mode", "review")
    proc, served = job.proc, job.served["server"]
    assert proc.code == 1, proc.explain()
    out = proc.json
    assert out["status"] == "failed"
    assert out["error"].startswith("agent 'reviewer' did not return a valid Review: ")
    assert "\n" not in out["error"]
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert error == f"error: {out['error']}"
    # Each method refused once, then JSON mode for the first ask and every re-ask.
    assert [r.channel for r in served.refused()] == ["json_schema", "tools"]
    assert served.channels()["json_object"] == STRUCTURED_ATTEMPTS
    assert served.channels("text")["json_object"] == STRUCTURED_ATTEMPTS
    # JSON mode carries the schema in the prompt; the server answers without reading it.
    assert prompts_with_schema(served) == ["reviewer"] * STRUCTURED_ATTEMPTS
    [note] = notes(proc.stderr)
    assert "by json_schema (HTTP 400), function_calling (HTTP 400); using json_mode" in note
    assert methods(job, out["thread_id"]) == {served.key: "json_mode"}


# --- 4. a resume reuses the stored method ------------------------------------------------


def test_a_resume_does_not_ask_a_refused_method_again(results, methods):
    job = results("resume", "review")
    stopped, resumed = job.procs
    before, after = job.served["before"], job.served["after"]
    assert stopped.code == 4, stopped.explain()
    assert stopped.json["status"] == "budget"
    # The reviewer was the 4th call: it found function_calling before the stop.
    assert [(r.role, r.channel, r.kind) for r in before.requests if r.channel != "text"] == [
        ("reviewer", "json_schema", "refused"),
        ("reviewer", "tools", "tool_call"),
    ]
    assert len(notes(stopped.stderr)) == 1
    out = finished(resumed)
    # The resumed reviewer (its second review) asked by tools straight away: the method stored
    # with the thread was used, with no json_schema request, no refusal and no note.
    assert after.channels()["json_schema"] == 0, after.channels()
    assert after.refused() == []
    assert [(r.role, r.kind) for r in after.requests if r.channel == "tools"] == [
        ("reviewer", "tool_call")
    ]
    assert notes(resumed.stderr) == []
    assert methods(job, out["thread_id"]) == {before.key: "function_calling"}


# --- 5. pools: each member finds its own method ------------------------------------------


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "capability"])
def test_pool_members_each_find_their_own_method(results, methods, strategy):
    job = results("pool", strategy)
    out = finished(job.proc)
    a, b = job.served["a"], job.served["b"]
    # Both members served structured calls: round-robin alternates, least-loaded spreads the
    # three bids asked at once, capability sends the analyst's to b.
    assert a.channels("text")["json_schema"] > 0, a.channels()
    assert a.refused() == [] and set(a.channels()) <= {"json_schema", "text"}
    assert [r.channel for r in b.refused()] == ["json_schema"]
    assert b.channels()["json_schema"] == 1
    assert b.channels("tool_call")["tools"] > 0, b.channels()
    assert methods(job, out["thread_id"]) == {a.key: "json_schema", b.key: "function_calling"}
    [note] = notes(job.proc.stderr)
    assert note.startswith(f"note: {b.key} refused structured output by json_schema")
    assert prompts_with_schema(a, b) == []
    if strategy == "capability":
        assert {r.role for r in a.requests} <= set(POOL_ROLES["a"])
        assert {r.role for r in b.requests} <= set(POOL_ROLES["b"])


# --- 6. a fallback profile finds its own method ------------------------------------------


@pytest.mark.parametrize("backup", ["accepting", "refusing"])
def test_a_fallback_profile_serves_structured_replies_when_the_primary_is_down(
    results, methods, backup
):
    job = results("fallback", backup)
    out = finished(job.proc)
    primary, served = job.served["primary"], job.served["backup"]
    # The primary was asked (by json_schema: a 500 is a failure, not a refusal) and failed.
    assert primary.requests and {r.kind for r in primary.requests} == {"status"}
    assert set(primary.channels()) == {"json_schema"}
    key = f"m2 at {served.base_url}"
    if backup == "accepting":
        assert served.refused() == []
        assert served.channels("text")["json_schema"] == served.channels().total() > 0
        assert methods(job, out["thread_id"]) == {key: "json_schema"}
        assert notes(job.proc.stderr) == []
    else:
        assert [r.channel for r in served.refused()] == ["json_schema"]
        assert served.channels()["json_schema"] == 1
        assert served.channels("tool_call")["tools"] > 0, served.channels()
        assert methods(job, out["thread_id"]) == {key: "function_calling"}
        assert len(notes(job.proc.stderr)) == 1
    assert prompts_with_schema(primary, served) == []


def test_calls_served_by_a_fallback_profile_are_reported(results):
    # `--fallback-model backup` names a plait.toml profile; the calls it served should be
    # reported under that name, as for any fallback spec (stderr note and --json).
    job = results("fallback", "accepting")
    out = finished(job.proc)
    calls = len(job.served["backup"].requests)
    assert out["fallback_calls"] == {"backup": calls}, out["fallback_calls"]
    assert f"note: fallback model backup served {calls} call(s)" in job.proc.stderr

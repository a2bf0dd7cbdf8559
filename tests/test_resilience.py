"""Transient faults are absorbed, fallbacks serve, breakers stop hammering a dead endpoint.

Every fault is injected through the loopback OpenAI-compatible server and answered by the real
``ChatOpenAI`` client (which does not retry by itself: plait does), and every test asserts how
many requests the server saw, so a double retry, a missing retry or a call made twice fails it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from plait import PlaitContext, RunFailed, RunSettings, resume, run
from plait.checkpoints import open_database
from plait.errors import ExitCode, ModelCallError
from plait.models import resilience
from plait.models.resilience import CallPolicy, CircuitBreaker, is_transient, retry_after
from plait.nodes.calls import call_model
from plait.testing import LoopbackServer, drop, malformed, status, text

APPROVED = json.dumps({"approved": True, "feedback": ""})
NOW = {"retry-after-ms": "1"}  # a server hint of 1 ms keeps retries of HTTP errors fast
FAST = CallPolicy(attempts=3, backoff=0.001, timeout=5.0)
PLAN = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "role": "researcher", "description": "find facts"},
            {"id": "s2", "role": "analyst", "description": "weigh options"},
            {"id": "s3", "role": "coder", "description": "sketch code"},
        ]
    }
)


def review_script(**replies: list) -> dict[str, list]:
    """The review graph's happy path (4 calls), with some roles' replies replaced."""
    script: dict[str, list] = {
        "researcher": ["facts"],
        "outliner": ["outline"],
        "writer": ["draft"],
        "reviewer": [APPROVED],
    }
    return {**script, **replies}


def loopback(server: LoopbackServer, **options) -> RunSettings:
    return RunSettings(model="openai:m", base_url=server.base_url, options=options)


def typed(cli, command: str, *extra: str):
    """The CLI as a user types ``command`` (split on spaces), with ``extra`` arguments."""
    return cli(*command.split(), *extra)


def at(server: LoopbackServer) -> list[str]:
    """The flags that point a CLI run (or a resume) at ``server`` as model ``openai:m``."""
    return ["--model", "openai:m", "--base-url", server.base_url]


def client(server: LoopbackServer, name: str = "m") -> ChatOpenAI:
    # The server echoes the request's model name, so usage shows which client served a call.
    return ChatOpenAI(model=name, base_url=server.base_url, api_key="k", max_retries=0)


def dead(role: str, body: dict):
    return status(500, headers=NOW)


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


async def thread_status(db: str, thread_id: str) -> str:
    async with open_database(db) as database:
        return (await database.threads.get(thread_id)).status


# --- retries through a whole run ------------------------------------------------------------


async def test_429_then_success_waits_as_the_server_asks_and_retries_once(db, monkeypatch):
    waits: list[float] = []
    real_delay = CallPolicy.delay

    def spy(self, attempt, exc):
        waits.append(real_delay(self, attempt, exc))
        return waits[-1]

    monkeypatch.setattr(CallPolicy, "delay", spy)
    script = review_script(researcher=[status(429, headers={"retry-after-ms": "20"}), "facts"])
    with LoopbackServer(script) as server:
        outcome = await run("review", "t", settings=loopback(server), db=db)
    assert outcome.status == "done"
    assert server.count("researcher") == 2
    assert server.count() == 5
    assert waits == [0.02]  # the server's hint, not plait's own backoff
    assert outcome.usage["researcher"]["calls"] == 1  # a failed attempt is not a served call


async def test_two_500s_then_success_is_three_requests_and_the_run_finishes(db):
    script = review_script(researcher=[status(500, headers=NOW), status(500, headers=NOW), "facts"])
    with LoopbackServer(script) as server:
        outcome = await run("review", "t", settings=loopback(server), db=db)
    assert (outcome.status, outcome.result) == ("done", "draft")
    assert [r.kind for r in server.requests if r.role == "researcher"] == ["status"] * 2 + ["text"]


@pytest.mark.parametrize("retries", [0, 1])
def test_500_on_every_attempt_is_retries_plus_one_requests_then_failed_and_resumable(
    cli, db, retries
):
    with LoopbackServer({"researcher": [status(500, headers=NOW)] * (retries + 1)}) as server:
        result = typed(cli, f"run review t --set retries={retries} --thread flaky", *at(server))
        # retries=0 proves the client adds no retries of its own under plait's.
        assert server.count() == retries + 1
    line = one_error_line(result, ExitCode.FAILED)
    assert "'researcher'" in line and "HTTP 500" in line
    assert "plait resume flaky" in result.stderr
    shown = json.loads(cli("threads", "show", "flaky", "--json").stdout)
    assert shown["status"] == "failed" and "HTTP 500" in shown["error"]

    with LoopbackServer(review_script()) as healthy:
        resumed = cli("resume", "flaky", "--json", *at(healthy))
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"] == "draft"


async def test_a_dropped_connection_then_an_answer_is_two_requests(db):
    with LoopbackServer(review_script(researcher=[drop(), "facts"])) as server:
        outcome = await run("review", "t", settings=loopback(server), db=db)
    assert outcome.status == "done"
    assert [r.kind for r in server.requests if r.role == "researcher"] == ["drop", "text"]


async def test_a_body_that_is_not_json_is_not_retried_and_fails_the_run_saying_so(db):
    # is_transient() does not count a JSONDecodeError, so there is no second request. A
    # truncated body from a proxy is often transient; see the report.
    with LoopbackServer({"researcher": [malformed()]}) as server:
        with pytest.raises(RunFailed, match="'researcher'.*body that is not JSON") as failure:
            await run("review", "t", settings=loopback(server), db=db)
        assert server.count() == 1
    assert await thread_status(db, failure.value.thread_id) == "failed"


# --- timeouts -------------------------------------------------------------------------------


def test_a_reply_slower_than_the_timeout_is_retried_then_fails_saying_so(cli, db):
    with LoopbackServer({"researcher": [text("late", delay=0.6)] * 2}) as server:
        result = typed(
            cli, "run review t --set timeout=0.2 --set retries=1 --thread slow", *at(server)
        )
        assert server.count() == 2
    line = one_error_line(result, ExitCode.FAILED)
    assert "'researcher'" in line and "did not answer in time" in line
    assert "plait resume slow" in result.stderr


def test_a_role_timeout_applies_to_that_role_only(cli):
    script = review_script(
        researcher=[text("too late", delay=0.5), "facts"],  # 0.5 s > its 0.2 s: retried
        outliner=[text("outline", delay=0.5)],  # the same 0.5 s is fine under the default
    )
    with LoopbackServer(script) as server:
        result = typed(cli, "run review t --set role_timeouts=researcher=0.2 --json", *at(server))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"] == "draft"
    assert (server.count("researcher"), server.count("outliner")) == (2, 1)


# --- CallPolicy, retry_after, is_transient --------------------------------------------------


def rate_limited(**headers: str) -> openai.RateLimitError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(429, headers=headers, request=request)
    return openai.RateLimitError("Too Many Requests", response=response, body=None)


def test_delay_honours_retry_after_ms_seconds_and_an_http_date(monkeypatch):
    policy = CallPolicy(backoff=0.5, max_backoff=30.0)
    assert policy.delay(0, rate_limited(**{"retry-after-ms": "250"})) == 0.25
    assert policy.delay(0, rate_limited(**{"Retry-After": "7"})) == 7.0
    # retry-after-ms is the more precise of the two and wins.
    assert policy.delay(0, rate_limited(**{"retry-after-ms": "5", "Retry-After": "9"})) == 0.005
    now = 1_700_000_000.0
    monkeypatch.setattr(resilience.time, "time", lambda: now)
    date = email.utils.formatdate(now + 12, usegmt=True)
    assert policy.delay(0, rate_limited(**{"Retry-After": date})) == 12.0
    past = email.utils.formatdate(now - 60, usegmt=True)
    assert policy.delay(0, rate_limited(**{"Retry-After": past})) == 0.0


def test_a_server_hint_is_capped_by_max_backoff():
    assert CallPolicy(max_backoff=2.0).delay(0, rate_limited(**{"Retry-After": "3600"})) == 2.0


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}, {"retry-after-ms": "x"}])
def test_without_a_usable_hint_the_delay_is_full_jitter_capped(monkeypatch, headers):
    bounds: list[tuple[float, float]] = []
    monkeypatch.setattr(resilience.random, "uniform", lambda a, b: bounds.append((a, b)) or b)
    policy = CallPolicy(backoff=0.5, max_backoff=3.0)
    exc = rate_limited(**headers)
    assert retry_after(exc) is None
    assert [policy.delay(attempt, exc) for attempt in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert {a for a, _ in bounds} == {0}


def test_real_jitter_stays_within_the_doubling_bound():
    policy = CallPolicy(backoff=0.1, max_backoff=0.3)
    for attempt, bound in [(0, 0.1), (1, 0.2), (2, 0.3), (6, 0.3)]:
        delays = [policy.delay(attempt, RuntimeError("x")) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert len(set(delays)) > 1  # jittered, so branches do not retry in lockstep


def api_error(code: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    return openai.APIStatusError("x", response=httpx.Response(code, request=request), body=None)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (api_error(429), True),
        (api_error(500), True),
        (api_error(503), True),
        (api_error(408), True),
        (api_error(400), False),
        (api_error(401), False),
        (api_error(404), False),
        (api_error(422), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (ValueError("bad"), False),
        (json.JSONDecodeError("x", "doc", 0), False),
    ],
)
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


# --- fallbacks ------------------------------------------------------------------------------


async def test_fallback_serves_when_the_primary_keeps_failing_and_usage_names_the_model(db):
    def primary_script(role: str, body: dict):
        return "facts" if role == "researcher" else status(500, headers=NOW)

    with (
        LoopbackServer(primary_script) as primary,
        LoopbackServer(
            {"outliner": ["outline"], "writer": ["draft"], "reviewer": [APPROVED]}
        ) as backup,
    ):
        context = PlaitContext(
            model=client(primary, "primary"), fallbacks=[client(backup, "backup")], policy=FAST
        )
        outcome = await run("review", "t", db=db, context=context)
    assert (outcome.status, outcome.result) == ("done", "draft")
    assert {agent: u["models"] for agent, u in outcome.usage.items()} == {
        "researcher": {"primary": 1},
        "outliner": {"backup": 1},
        "writer": {"backup": 1},
        "reviewer": {"backup": 1},
    }
    # outliner: 3 attempts, then the fallback; writer: 2 more failures open the breaker (5 in
    # a row), then the fallback; reviewer: the breaker is open, the primary is not asked.
    asked = {role: primary.count(role) for role in ("researcher", "outliner", "writer", "reviewer")}
    assert asked == {"researcher": 1, "outliner": 3, "writer": 2, "reviewer": 0}


def test_fallback_model_flag_serves_a_dead_primary_and_threads_show_names_it(cli):
    with LoopbackServer(dead) as server:
        result = typed(cli, "run review t --fallback-model demo --thread fb --json", *at(server))
        assert server.count() == 5  # 3 for the researcher, 2 more open the breaker
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["fallback_calls"] == {"demo": 6}
    assert "note: fallback model demo served 6 call(s)" in result.stderr
    shown = json.loads(cli("threads", "show", "fb", "--json").stdout)
    assert shown["status"] == "done"
    # The demo reviewer rejects the first draft, so the reviser and a second review follow.
    assert {agent: u["models"] for agent, u in shown["usage"].items()} == {
        "researcher": {"demo": 1},
        "outliner": {"demo": 1},
        "writer": {"demo": 1},
        "reviewer": {"demo": 2},
        "reviser": {"demo": 1},
    }
    table = cli("threads", "show", "fb").stdout
    assert "demo×1" in table and "m×" not in table


# --- circuit breaker ------------------------------------------------------------------------


def test_a_64_way_fan_out_against_a_dead_endpoint_makes_few_requests(cli, tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("\n".join(f"item {i}" for i in range(64)) + "\n")
    with LoopbackServer(dead) as server:
        args = "run map-reduce summarize --fallback-model demo --set max_concurrency=8 --json"
        result = typed(cli, args, "--input", str(items), *at(server))
    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["errors"] == {}
    assert outcome["usage"]["mapper"]["models"] == {"demo": 64}
    # The breaker (threshold 5) lets a call through only while it is closed. When the 5th
    # failure opens it, at most max_concurrency - 1 = 7 other branches can have a request in
    # flight (one request per branch at a time), and nothing is sent after that (the cooldown
    # outlasts the run). So the bound is 5 + 7 = 12, against 64 x 3 = 192 without a breaker.
    assert 5 <= server.count() <= 5 + 8 - 1
    assert server.count("reducer") == 0


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(resilience.time, "monotonic", lambda: now[0])
    return now


def test_circuit_breaker_opens_cools_down_probes_once_and_closes(clock):
    breaker = CircuitBreaker(threshold=3, cooldown=10.0)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    assert not breaker.is_open
    breaker.succeeded()  # consecutive failures only
    for _ in range(3):
        assert breaker.allow()
        breaker.failed()
    assert breaker.is_open
    clock[0] += 9.9
    assert not breaker.allow()  # cooling down
    clock[0] += 0.1
    assert breaker.allow()  # half-open: this caller is the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.succeeded()
    assert not breaker.is_open
    assert breaker.allow() and breaker.allow()


def test_a_failed_probe_opens_the_breaker_for_another_cooldown(clock):
    breaker = CircuitBreaker(threshold=2, cooldown=5.0)
    breaker.failed()
    breaker.failed()
    clock[0] += 5.0
    assert breaker.allow()
    breaker.failed()  # the probe failed: open again from now, though failures < threshold
    assert breaker.is_open
    clock[0] += 4.9
    assert not breaker.allow()
    clock[0] += 0.1
    assert breaker.allow()


async def test_a_cancelled_probe_does_not_leave_the_breaker_shut_for_good():
    # A probe can be cancelled, e.g. by the perspectives graph's branch_timeout (asyncio
    # wait_for around call_model). The breaker must let a later call probe again.
    script = {"writer": [status(500), text("too slow", delay=1.0), "ok"]}
    with LoopbackServer(script) as server:
        context = PlaitContext(
            model=client(server),
            policy=CallPolicy(attempts=1, timeout=5.0),
            breaker=CircuitBreaker(threshold=1, cooldown=0.0),
        )
        messages = [SystemMessage("You are the writer."), HumanMessage("go")]
        with pytest.raises(ModelCallError, match="HTTP 500"):
            await call_model(context, "writer", "writer", messages)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call_model(context, "writer", "writer", messages), 0.2)
        reply, _ = await call_model(context, "writer", "writer", messages)
    assert reply.content == "ok"
    assert server.count() == 3


# --- branch errors and settling -------------------------------------------------------------


async def test_on_branch_error_continue_records_the_failure_and_tells_the_synthesizer(db):
    script = {
        "planner": [PLAN],
        "researcher": ["out-research"],
        "coder": ["out-code"],
        "synthesizer": ["the answer"],
    }
    with LoopbackServer(script) as healthy, LoopbackServer(dead) as broken:
        context = PlaitContext(
            model=client(healthy), model_for={"analyst": client(broken, "broken")}, policy=FAST
        )
        outcome = await run(
            "orchestrator",
            "t",
            db=db,
            context=context,
            settings=RunSettings(options={"on_branch_error": "continue"}),
        )
    assert (outcome.status, outcome.result) == ("done", "the answer")
    assert list(outcome.errors) == ["s2"]
    assert "'analyst'" in outcome.errors["s2"] and "HTTP 500" in outcome.errors["s2"]
    assert broken.count("analyst") == FAST.attempts
    [synth] = [r for r in healthy.requests if r.role == "synthesizer"]
    prompt = synth.body["messages"][-1]["content"]
    assert "out-research" in prompt and "out-code" in prompt
    assert "[s2 · analyst] weigh options\nFAILED: model call for 'analyst' failed" in prompt


async def test_a_failing_branch_waits_for_slow_siblings_so_resume_does_not_pay_again(db):
    # on_branch_error=fail: the analyst fails for good at once while its siblings are still
    # waiting for their replies. settle() holds the failure until they land, so their outputs
    # are checkpointed; on resume only the analyst and the synthesizer are asked.
    first_script = {
        "planner": [PLAN],
        "researcher": [text("out-research", delay=0.5)],
        "coder": [text("out-code", delay=0.5)],
        "analyst": [status(401)],
    }
    with (
        LoopbackServer(first_script) as first,
        pytest.raises(RunFailed, match="'analyst'.*HTTP 401") as failure,
    ):
        await run("orchestrator", "t", settings=loopback(first), db=db)
    thread_id = failure.value.thread_id
    assert await thread_status(db, thread_id) == "failed"

    def synthesize(role: str, body: dict) -> str:
        return "ok" if role == "analyst" else "SYNTH " + body["messages"][-1]["content"]

    with LoopbackServer(synthesize) as second:
        outcome = await resume(thread_id, db=db, overrides={"base_url": second.base_url})
    assert sorted(r.role for r in second.requests) == ["analyst", "synthesizer"]
    assert "out-research" in outcome.result and "out-code" in outcome.result
    assert outcome.usage["researcher"]["calls"] == outcome.usage["coder"]["calls"] == 1

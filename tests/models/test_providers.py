"""Any LangChain provider as a plait model: bare names, endpoints, keys, transient faults, profiles.

Non-OpenAI providers are exercised through their real integrations (langchain-anthropic,
langchain-ollama) against a tiny loopback HTTP server that answers in each provider's own wire
format, so a request that goes to the wrong place, is retried twice or is read wrongly fails.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import httpx
import langchain.chat_models
import openai
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_ollama import ChatOllama
from langchain_openai import ChatOpenAI

from plait import PlaitContext
from plait.errors import ExitCode, ModelCallError, ModelSpecError
from plait.models import load_chat_model, parse_spec
from plait.models.resilience import CallPolicy, is_transient
from plait.models.spec import KEY_VARIABLES
from plait.nodes.calls import call_model
from plait.testing import LoopbackServer, demo_responder

try:  # openai>=3 and recent anthropic SDKs send through httpx2, a fork of httpx
    import httpx2
except ImportError:  # older SDKs send through httpx itself
    httpx2 = None
HTTP_MODULES = tuple(m for m in (httpx, httpx2) if m is not None)
needs_httpx2 = pytest.mark.skipif(httpx2 is None, reason="the SDKs installed use httpx")

MESSAGES = [SystemMessage("You are the writer."), HumanMessage("go")]
CLAUDE = "anthropic:claude-sonnet-4-5"


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch):
    # conftest clears OpenAI's variables; a developer's other keys must not leak in either.
    for variable in {*KEY_VARIABLES.values(), "ANTHROPIC_BASE_URL", "OLLAMA_HOST", "MY_KEY"}:
        monkeypatch.delenv(variable, raising=False)


# --- a loopback server speaking Anthropic's and Ollama's wire formats ------------------------

Reply = tuple[int, str, bytes] | None  # (status, content type, body); None drops the connection


def anthropic_message(text: str = "hello from claude", model: str = "claude-sonnet-4-5") -> Reply:
    """An Anthropic Messages API reply."""
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 3},
    }
    return 200, "application/json", json.dumps(body).encode()


def anthropic_error(code: int = 500) -> Reply:
    body = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    return code, "application/json", json.dumps(body).encode()


def ollama_chat(request: dict[str, Any], text: str = "hello from llama") -> Reply:
    """Ollama's ``/api/chat`` reply: NDJSON chunks when the request streams, else one object."""
    model = request.get("model", "llama3.1")
    at = "2025-01-01T00:00:00Z"
    final = {
        "model": model,
        "created_at": at,
        "message": {"role": "assistant", "content": "" if request.get("stream") else text},
        "done": True,
        "done_reason": "stop",
        "total_duration": 1,
        "load_duration": 1,
        "prompt_eval_count": 7,
        "prompt_eval_duration": 1,
        "eval_count": 2,
        "eval_duration": 1,
    }
    if not request.get("stream"):
        return 200, "application/json", json.dumps(final).encode()
    chunk = {"model": model, "created_at": at, "message": {"role": "assistant", "content": text}}
    lines = [{**chunk, "done": False}, final]
    return 200, "application/x-ndjson", "".join(json.dumps(x) + "\n" for x in lines).encode()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its connection (a dropped reply, a stale pooled connection) is
        # expected here. Printing its traceback from this thread would also race pytest's own
        # traceback rendering: Python 3.11's ast, which both use, is not thread-safe.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ProviderServer:
    """An HTTP server on 127.0.0.1 that records each POST and answers with ``respond(path, body)``."""

    def __init__(self, respond: Callable[[str, dict[str, Any]], Reply]) -> None:
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                owner.requests.append(
                    (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                reply = respond(self.path, body)
                if reply is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                code, content_type, payload = reply
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def __enter__(self) -> ProviderServer:
        serve = self._httpd.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def context(spec: str, base_url: str, retries: int = 0) -> PlaitContext:
    policy = CallPolicy(attempts=retries + 1, backoff=0.001, max_backoff=0.01, timeout=10.0)
    return PlaitContext(model=spec, base_url=base_url, policy=policy)


# --- 1. bare model names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, provider",
    [("gpt-4o-mini", "openai"), ("o3-mini", "openai"), ("claude-sonnet-4-5", "anthropic")],
)
def test_a_bare_name_gets_the_provider_langchain_infers(name, provider):
    assert parse_spec(name) == (provider, name)


@pytest.mark.parametrize("name", ["mymodel", "llama3"])
def test_a_bare_name_with_no_inferable_provider_asks_for_one(name):
    with pytest.raises(ModelSpecError) as raised:
        parse_spec(name)
    assert f"PROVIDER:{name}" in str(raised.value)
    assert f"{name!r}" in str(raised.value)


def test_load_chat_model_of_a_bare_name_builds_that_providers_client():
    model = load_chat_model("claude-sonnet-4-5", base_url="http://127.0.0.1:9")
    assert isinstance(model, ChatAnthropic)
    assert model.model == "claude-sonnet-4-5"


def test_the_cli_runs_a_bare_model_name_against_the_base_url(cli):
    with LoopbackServer(demo_responder) as server:
        result = cli("run", "review", "t", "--model", "gpt-4o-mini", "--base-url", server.base_url)
    assert result.exit_code == 0, result.stderr
    assert server.count() >= 4  # research, outline, write, review at least
    assert {r.body["model"] for r in server.requests} == {"gpt-4o-mini"}


def test_the_cli_rejects_a_bare_name_it_cannot_place_before_making_a_thread(cli):
    result = cli("run", "review", "t", "--model", "mymodel", "--base-url", "http://127.0.0.1:9")
    assert result.exit_code == 2, result.stderr
    assert "PROVIDER:mymodel" in result.stderr
    assert json.loads(cli("threads", "--json").stdout) == []


# --- 2. --base-url with providers other than OpenAI ----------------------------------------


def test_anthropic_with_a_base_url_points_its_client_there_and_needs_no_key():
    model = load_chat_model(CLAUDE, base_url="http://127.0.0.1:9/x")
    assert isinstance(model, ChatAnthropic)
    assert model.anthropic_api_url == "http://127.0.0.1:9/x"
    assert model.model == "claude-sonnet-4-5"


def test_ollama_with_a_base_url_points_its_client_there():
    model = load_chat_model("ollama:llama3.1", base_url="http://127.0.0.1:9/x")
    assert isinstance(model, ChatOllama)
    assert model.base_url == "http://127.0.0.1:9/x"
    assert model.model == "llama3.1"


async def test_an_anthropic_call_reaches_the_base_url_and_is_counted():
    with ProviderServer(lambda path, body: anthropic_message()) as server:
        reply, usage = await call_model(context(CLAUDE, server.url), "writer", "w", MESSAGES)
    assert reply.content == "hello from claude"
    assert server.paths == ["/v1/messages"]
    _, headers, body = server.requests[0]
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == "You are the writer."
    assert body["messages"] == [{"role": "user", "content": "go"}]
    # The client sends some key even to a local server (the SDK refuses to send none).
    assert headers.get("x-api-key") or headers.get("authorization")
    w = usage["w"]
    assert (w["input_tokens"], w["output_tokens"], w["calls"]) == (11, 3, 1)
    assert w["models"] == {"claude-sonnet-4-5": 1}
    assert w["cost"] > 0  # a known model: priced


async def test_an_ollama_call_reaches_the_base_url_and_is_counted():
    with ProviderServer(lambda path, body: ollama_chat(body)) as server:
        ctx = context("ollama:llama3.1", server.url)
        reply, usage = await call_model(ctx, "writer", "w", MESSAGES)
    assert reply.content == "hello from llama"
    assert server.paths == ["/api/chat"]
    body = server.requests[0][2]
    assert body["model"] == "llama3.1"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    w = usage["w"]
    assert (w["input_tokens"], w["output_tokens"], w["calls"]) == (7, 2, 1)
    assert w["models"] == {"llama3.1": 1}


def test_an_anthropic_client_serves_a_second_event_loop(monkeypatch):
    # run, then resume: two asyncio.run() calls in one process, one endpoint.
    with ProviderServer(lambda path, body: anthropic_message()) as server:
        for _ in range(2):
            reply, _ = asyncio.run(call_model(context(CLAUDE, server.url), "writer", "w", MESSAGES))
            assert reply.content == "hello from claude"
    assert len(server.requests) == 2


# --- 3. missing keys ------------------------------------------------------------------------


@pytest.mark.parametrize("provider, variable", sorted(KEY_VARIABLES.items()))
def test_a_missing_key_is_named_before_the_provider_is_loaded(monkeypatch, provider, variable):
    def must_not_be_called(*args, **kwargs):
        raise AssertionError("the provider's integration was loaded before the key was checked")

    monkeypatch.setattr(langchain.chat_models, "init_chat_model", must_not_be_called)
    with pytest.raises(ModelSpecError) as raised:
        load_chat_model(f"{provider}:some-model")
    assert f"${variable}" in str(raised.value)
    assert "--base-url" in str(raised.value)


def test_the_key_message_comes_before_a_missing_package():
    # langchain-groq is not installed: the first thing to fix is still the key.
    with pytest.raises(ModelSpecError) as raised:
        load_chat_model("groq:llama3")
    assert "$GROQ_API_KEY" in str(raised.value)
    assert "not installed" not in str(raised.value)


def test_with_the_key_set_a_missing_package_is_named(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    with pytest.raises(ModelSpecError) as raised:
        load_chat_model("groq:llama3")
    assert "'groq'" in str(raised.value) and "not installed" in str(raised.value)


def test_the_providers_key_is_passed_to_its_client(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    model = load_chat_model(CLAUDE)
    assert isinstance(model, ChatAnthropic)
    assert model.anthropic_api_key.get_secret_value() == "sk-ant-test"


@pytest.mark.parametrize(
    "spec, kind",
    [("openai:m", ChatOpenAI), (CLAUDE, ChatAnthropic), ("ollama:llama3.1", ChatOllama)],
)
def test_with_a_base_url_no_key_is_demanded(spec, kind):
    assert isinstance(load_chat_model(spec, base_url="http://127.0.0.1:9"), kind)


def test_ollama_needs_no_key_and_no_base_url():
    assert isinstance(load_chat_model("ollama:llama3.1"), ChatOllama)


def test_the_cli_names_a_missing_provider_key_in_one_line_and_makes_no_thread(cli):
    result = cli("run", "review", "t", "--model", CLAUDE)
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "ANTHROPIC_API_KEY" in lines[0]
    assert json.loads(cli("threads", "--json").stdout) == []


def test_a_profiles_unset_key_variable_is_named():
    profiles = {"p": {"model": "openai:m", "api_key_env": "MY_KEY"}}
    with pytest.raises(ModelSpecError) as raised:
        load_chat_model("p", profiles=profiles)
    assert "$MY_KEY" in str(raised.value)


def test_a_profiles_key_variable_is_used(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-mine")
    profiles = {"p": {"model": "openai:m", "api_key_env": "MY_KEY"}}
    model = load_chat_model("p", profiles=profiles)
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_key.get_secret_value() == "sk-mine"


# --- 4. connection errors are transient -----------------------------------------------------


def wrapped(sdk_error: type[Exception], cause: BaseException) -> Exception:
    error = sdk_error(request=httpx.Request("POST", "http://x"))
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("x"),
        httpx.ReadTimeout("x"),
        httpx.RemoteProtocolError("x"),
        ConnectionRefusedError("x"),
        wrapped(openai.APIConnectionError, httpx.ConnectError("x")),
        wrapped(anthropic.APIConnectionError, httpx.ConnectError("x")),
        wrapped(anthropic.APIConnectionError, httpx.ReadTimeout("x")),
    ],
    ids=repr,
)
def test_connection_errors_and_timeouts_are_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [httpx.UnsupportedProtocol("x"), ValueError("x"), KeyError("x")],
    ids=repr,
)
def test_other_errors_are_not_transient(exc):
    assert not is_transient(exc)


@needs_httpx2
@pytest.mark.parametrize(
    "sdk_error",
    [openai.APIConnectionError, anthropic.APIConnectionError],
    ids=["openai", "anthropic"],
)
@pytest.mark.parametrize("cause", ["ConnectError", "ReadTimeout", "RemoteProtocolError"])
def test_sdk_errors_over_httpx2_are_transient(sdk_error, cause):
    # openai>=3 and anthropic's SDK send through httpx2, whose errors are not httpx's: a raw
    # SDK connection error (one no LangChain integration re-raised as ModelConnectionError)
    # carries an httpx2 error as its cause.
    assert is_transient(getattr(httpx2, cause)("x"))
    assert is_transient(wrapped(sdk_error, getattr(httpx2, cause)("x")))


@needs_httpx2
def test_an_httpx2_malformed_url_is_not_transient():
    assert not is_transient(wrapped(anthropic.APIConnectionError, httpx2.UnsupportedProtocol("x")))


@pytest.mark.parametrize("spec", ["openai:m", CLAUDE])
async def test_a_malformed_base_url_is_not_transient(spec):
    # The SDKs wrap httpx.UnsupportedProtocol in their own connection error (which langchain's
    # integrations make a ModelConnectionError); retrying a URL with no scheme cannot help.
    model = load_chat_model(spec, base_url="127.0.0.1:9/v1")
    model = model.model_copy(update={"max_retries": 0})
    with pytest.raises(Exception) as raised:
        await model.ainvoke(MESSAGES)
    causes, seen = [], raised.value
    while seen is not None:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    assert any(isinstance(c, tuple(m.UnsupportedProtocol for m in HTTP_MODULES)) for c in causes)
    assert not is_transient(raised.value)


class Attempts:
    """Counts the HTTP requests async clients send, through their transports.

    Both httpx and httpx2: openai>=3 and anthropic's SDK are built on httpx2 (plait hands
    ChatOpenAI an httpx client, which the SDK accepts), ollama's client on httpx.
    """

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        for module in HTTP_MODULES:
            real = module.AsyncHTTPTransport.handle_async_request
            monkeypatch.setattr(
                module.AsyncHTTPTransport, "handle_async_request", self._counted(real)
            )

    def _counted(self, real):
        async def counted(transport, request):
            self.count += 1
            return await real(transport, request)

        return counted


@pytest.mark.parametrize("retries", [0, 1])
@pytest.mark.parametrize("spec", ["openai:m", CLAUDE, "ollama:llama3.1"])
async def test_a_refused_connection_is_tried_retries_plus_one_times(monkeypatch, spec, retries):
    attempts = Attempts(monkeypatch)
    url = closed_port_url() + ("/v1" if spec.startswith("openai") else "")
    with pytest.raises(ModelCallError) as raised:
        await call_model(context(spec, url, retries), "writer", "w", MESSAGES)
    # plait retries; the provider's client must not retry under it.
    assert attempts.count == retries + 1, str(raised.value)


@pytest.mark.parametrize("spec", ["openai:m", CLAUDE, "ollama:llama3.1"])
async def test_a_refused_connection_is_reported_as_an_unreachable_endpoint(spec):
    url = closed_port_url() + ("/v1" if spec.startswith("openai") else "")
    with pytest.raises(ModelCallError) as raised:
        await call_model(context(spec, url), "writer", "w", MESSAGES)
    message = str(raised.value)
    # No SDK here puts the URL in its message ("Connection error.", "All connection attempts
    # failed"), so plait's own words are what tell the user the endpoint is down.
    assert message.startswith("model call for 'writer' failed: cannot reach the model endpoint")


@pytest.mark.parametrize("retries", [0, 1])
async def test_an_anthropic_500_is_sent_retries_plus_one_times(retries):
    with (
        ProviderServer(lambda path, body: anthropic_error(500)) as server,
        pytest.raises(ModelCallError, match="HTTP 500"),
    ):
        await call_model(context(CLAUDE, server.url, retries), "writer", "w", MESSAGES)
    assert len(server.requests) == retries + 1


async def test_an_anthropic_dropped_connection_is_retried_by_plait_alone():
    replies = iter([None, anthropic_message("second try")])
    with ProviderServer(lambda path, body: next(replies)) as server:
        reply, _ = await call_model(context(CLAUDE, server.url, 1), "writer", "w", MESSAGES)
    assert reply.content == "second try"
    assert len(server.requests) == 2


def test_the_cli_sends_an_anthropic_request_once_with_retries_0(cli):
    with ProviderServer(lambda path, body: anthropic_error(500)) as server:
        result = cli(
            "run", "review", "t", "--model", CLAUDE, "--base-url", server.url, "--set", "retries=0"
        )
    assert result.exit_code == ExitCode.FAILED, result.stderr
    assert "HTTP 500" in result.stderr
    assert len(server.requests) == 1


# --- 5. profiles and the client cache -------------------------------------------------------


def fast(args: dict[str, Any] | None = None, url: str = "http://127.0.0.1:9/v1") -> dict:
    return {"fast": {"model": "openai:m", "base_url": url, "args": args or {"temperature": 0.2}}}


async def test_a_profile_builds_its_client_with_its_endpoint_and_arguments():
    model = load_chat_model("fast", profiles=fast())
    assert isinstance(model, ChatOpenAI)
    assert (model.model_name, model.openai_api_base, model.temperature) == (
        "m",
        "http://127.0.0.1:9/v1",
        0.2,
    )


async def test_a_profiles_endpoint_wins_over_the_base_url():
    model = load_chat_model("fast", base_url="http://127.0.0.1:8/other", profiles=fast())
    assert model.openai_api_base == "http://127.0.0.1:9/v1"


async def test_a_non_openai_profile_gets_its_endpoint_and_arguments():
    profiles = {
        "claude": {"model": CLAUDE, "base_url": "http://127.0.0.1:9", "args": {"temperature": 0.3}}
    }
    model = load_chat_model("claude", profiles=profiles)
    assert isinstance(model, ChatAnthropic)
    assert (model.anthropic_api_url, model.temperature) == ("http://127.0.0.1:9", 0.3)


async def test_one_client_per_profile_per_event_loop():
    first = load_chat_model("fast", profiles=fast())
    assert load_chat_model("fast", profiles=fast()) is first
    other = load_chat_model("fast", profiles=fast({"temperature": 0.9}))
    assert other is not first
    assert other.temperature == 0.9
    assert load_chat_model("fast", profiles=fast(url="http://127.0.0.1:8/v1")) is not first


def test_each_event_loop_gets_clients_of_its_own():
    async def load():
        return load_chat_model("fast", profiles=fast())

    first, second = asyncio.run(load()), asyncio.run(load())
    assert first is not second

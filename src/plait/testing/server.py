"""An OpenAI-compatible chat server on loopback, so the real client path is tested offline."""

from __future__ import annotations

import contextlib
import functools
import http
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from plait.models.demo import tokens
from plait.testing.scripted import raise_if_failed, unconsumed_report

ROLE_PATTERN = re.compile(r"You are the ([\w-]+)")
COMPLETIONS = "/v1/chat/completions"


@dataclass(frozen=True)
class ReplySpec:
    """How the server answers one request; build it with ``text``, ``status``, ``malformed``..."""

    kind: str
    content: str = ""
    code: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request the server received.

    Attributes:
        role: The role read from the request's system message (``"unknown"`` if none).
        body: The request's JSON body.
        kind: The reply it got: ``"text"``, ``"status"``, ``"malformed"``, ``"drop"``, or
            ``"violation"`` when the script did not cover it.

    """

    role: str
    body: dict[str, Any]
    kind: str


Script = Mapping[str, Sequence[ReplySpec | str]] | Callable[[str, dict[str, Any]], ReplySpec | str]


def text(content: str, *, delay: float = 0.0) -> ReplySpec:
    """Answer with a chat completion whose message is ``content``, after ``delay`` seconds."""
    return ReplySpec("text", content=content, delay=delay)


def status(
    code: int,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> ReplySpec:
    """Answer with HTTP ``code`` and an OpenAI-style error body (or ``body`` as JSON, if given).

    plait waits as long as ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``
    asks before retrying; ``headers={"retry-after-ms": "1"}`` keeps a test fast.

    Example:
        ``status(429, headers={"retry-after-ms": "1"})``

    """
    return ReplySpec("status", code=code, body=body, headers=dict(headers or {}), delay=delay)


def malformed(delay: float = 0.0) -> ReplySpec:
    """Answer HTTP 200 with a body that is not JSON, as a broken proxy might."""
    return ReplySpec("malformed", delay=delay)


def drop(delay: float = 0.0) -> ReplySpec:
    """Close the connection without answering, as a crashed endpoint would."""
    return ReplySpec("drop", delay=delay)


def demo_responder(role: str, body: dict[str, Any]) -> str:
    """Answer any request as plait's offline demo model would, for unscripted or benchmark runs.

    Example:
        ``with LoopbackServer(demo_responder) as server: ...``

    """
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from plait.models.demo import DemoChatModel

    kinds = {"system": SystemMessage, "developer": SystemMessage, "assistant": AIMessage}
    messages = [
        kinds.get(m.get("role"), HumanMessage)(_content(m)) for m in body.get("messages", [])
    ]
    return str(DemoChatModel()._reply(messages, role).generations[0].message.content)


class LoopbackServer:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint on 127.0.0.1, scripted per role.

    The role of a request is read from its first system message ("You are the <role>..."),
    as every plait prompt starts. Requests are answered on their own threads, so concurrent
    requests with a delay overlap as they would on a real endpoint. Every request is recorded;
    one the script does not cover gets HTTP 500 and is kept in ``violations``.

    Args:
        script: For each role, its replies in order (a ``str`` is a text reply), or a callable
            ``(role, body) -> ReplySpec | str`` that answers every request.

    Example:
        ``with LoopbackServer({"writer": ["draft", status(500)]}) as server:``
        ``    model = ChatOpenAI(model="m", base_url=server.base_url, api_key="k")``

    """

    def __init__(self, script: Script) -> None:
        self._responder = script if callable(script) else None
        mapping = {} if callable(script) else script
        self._scripted = {role: len(replies) for role, replies in mapping.items()}
        self._queues = {role: deque(replies) for role, replies in mapping.items()}
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self.requests: list[Recorded] = []
        self.violations: list[str] = []

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give an OpenAI client, e.g. ``http://127.0.0.1:5123/v1``."""
        if self._httpd is None:
            raise RuntimeError("LoopbackServer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> LoopbackServer:
        """Start serving on a free port, on a daemon thread."""
        self._httpd = _HTTPServer(self)
        # stop() waits for the serve loop to poll; the default half second would dominate tests.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_all()
        self._httpd.server_close()
        self._httpd = None

    def count(self, role: str | None = None) -> int:
        """How many requests were received, in all or for ``role``."""
        with self._lock:
            return sum(1 for r in self.requests if role is None or r.role == role)

    def verify(self) -> None:
        """Check the script was followed exactly.

        Raises:
            ScriptError: naming every request the script did not cover and every role with
                replies left.

        """
        with self._lock:
            made = {role: sum(1 for r in self.requests if r.role == role) for role in self._queues}
            violations = list(self.violations)
        raise_if_failed(violations, unconsumed_report(self._scripted, made))

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()
        # On an exception the test has already failed; a second error would hide the first.
        if exc_type is None:
            self.verify()

    def _choose(self, role: str, body: dict[str, Any]) -> ReplySpec:
        problem = f"script exhausted for role {role!r}"
        reply: ReplySpec | str | None = None
        try:
            if self._responder is not None:
                reply = self._responder(role, body)
            else:
                with self._lock:
                    queue = self._queues.get(role)
                    reply = queue.popleft() if queue else None
        except Exception as exc:  # a broken responder must fail the test, not hang the client
            problem = f"responder failed for role {role!r}: {exc!r}"
        if reply is None:
            self._record(role, body, "violation", problem)
            return status(500, body=_error(problem, "server_error", "script_exhausted"))
        reply = text(reply) if isinstance(reply, str) else reply
        self._record(role, body, reply.kind)
        return reply

    def _record(self, role: str, body: dict[str, Any], kind: str, problem: str = "") -> None:
        with self._lock:
            self.requests.append(Recorded(role, body, kind))
            if problem:
                self.violations.append(problem)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many clients connect at once in fan-out tests and benchmarks; the default backlog of 5
    # would make the kernel refuse or delay connections.
    request_queue_size = 512

    def __init__(self, owner: LoopbackServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, stop()) leaves a handler writing to a closed socket;
        # that is expected in these tests, anything else is a bug worth printing.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_all(self) -> None:
        # Keep-alive handler threads block reading their socket; shutting it down frees them
        # and keeps a stopped server from answering on a pooled connection.
        with self.connections_lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
    # Headers and body go out in separate writes; with Nagle's algorithm the body would wait
    # for the client's delayed ACK, about 40 ms a request.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read the recorded requests, not stderr

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != COMPLETIONS:
            return self._refuse(404, f"no route for POST {self.path}", "unknown_url")
        try:
            body = json.loads(raw)
        except ValueError:
            return self._refuse(400, "request body is not JSON", "invalid_json")
        if body.get("stream"):
            return self._refuse(400, "LoopbackServer does not stream", "stream_unsupported")
        reply = self.server.owner._choose(_role(body), body)
        if reply.delay > 0:
            time.sleep(reply.delay)
        if reply.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif reply.kind == "malformed":
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [')
        elif reply.kind == "status":
            phrase = http.HTTPStatus(reply.code).phrase
            payload = reply.body if reply.body is not None else _error(phrase, _type(reply.code))
            self._send(reply.code, json.dumps(payload).encode(), reply.headers)
        else:
            self._send(200, json.dumps(_completion(body, reply.content)).encode())

    def do_GET(self) -> None:
        self._refuse(404, f"no route for GET {self.path}", "unknown_url")

    def _refuse(self, code: int, message: str, reason: str) -> None:
        with self.server.owner._lock:
            self.server.owner.violations.append(message)
        self._send(code, json.dumps(_error(message, "invalid_request_error", reason)).encode())

    def _send(self, code: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _content(message: Mapping[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _role(body: Mapping[str, Any]) -> str:
    # langchain-openai sends a SystemMessage as "developer" for reasoning models.
    systems = [m for m in body.get("messages", []) if m.get("role") in ("system", "developer")]
    found = ROLE_PATTERN.search(_content(systems[0])) if systems else None
    return found.group(1) if found else "unknown"


def _type(code: int) -> str:
    known = {401: "authentication", 403: "permission", 404: "not_found", 429: "rate_limit"}
    return "server_error" if code >= 500 else known.get(code, "invalid_request") + "_error"


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


def _completion(body: Mapping[str, Any], content: str) -> dict[str, Any]:
    prompt = "\n".join(_content(m) for m in body.get("messages", []))
    usage = {"prompt_tokens": tokens(prompt), "completion_tokens": tokens(content)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    message = {"role": "assistant", "content": content}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "loopback"),
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": usage,
    }

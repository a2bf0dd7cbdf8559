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

from plait.models.demo import _canned_text, _Filler, tokens
from plait.testing.scripted import raise_if_failed, unconsumed_report

ROLE_PATTERN = re.compile(r"You are the ([\w-]+)")
COMPLETIONS = "/v1/chat/completions"
MODELS = "/v1/models"


@dataclass(frozen=True)
class ReplySpec:
    """How the server answers one request; build it with ``text``, ``status``, ``malformed``..."""

    kind: str
    content: str = ""
    code: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    tool: str = ""  # the function a "tool_call" reply calls; its arguments are ``content``


@dataclass(frozen=True)
class Recorded:
    """One request the server received.

    Attributes:
        role: The role read from the request's system message (``"unknown"`` if none).
        body: The request's JSON body.
        kind: The reply it got: ``"text"``, ``"tool_call"``, ``"status"``, ``"malformed"``,
            ``"drop"``, ``"refused"`` (HTTP 400 from ``schema_responder``: a refused schema
            channel or a schema that is not strict-compatible), ``"unauthorized"`` (HTTP 401:
            the server's ``api_key`` was not sent), or ``"violation"`` when the script did not
            cover it.

    """

    role: str
    body: dict[str, Any]
    kind: str

    @property
    def channel(self) -> str:
        """How the request asked for structure.

        ``"json_schema"`` or ``"json_object"`` (its ``response_format`` type), else ``"tools"``
        if it carried tools, else ``"text"``.

        Example:
            ``sum(r.channel == "json_schema" for r in server.requests)``

        """
        kind = (self.body.get("response_format") or {}).get("type")
        if kind in ("json_schema", "json_object"):
            return str(kind)
        return "tools" if self.body.get("tools") else "text"


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


def tool_call(name: str, arguments: Mapping[str, Any] | str, *, delay: float = 0.0) -> ReplySpec:
    """Answer with an assistant message that calls function ``name`` with ``arguments``.

    The message has ``content: null``, one ``tool_calls`` entry and ``finish_reason:
    "tool_calls"``, as OpenAI sends; ``arguments`` is a JSON object or its text.
    """
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ReplySpec("tool_call", content=args, tool=name, delay=delay)


def malformed(delay: float = 0.0) -> ReplySpec:
    """Answer HTTP 200 with a body that is not JSON, as a broken proxy might."""
    return ReplySpec("malformed", delay=delay)


def drop(delay: float = 0.0) -> ReplySpec:
    """Close the connection without answering, as a crashed endpoint would."""
    return ReplySpec("drop", delay=delay)


def demo_responder(role: str, body: dict[str, Any]) -> ReplySpec | str:
    """Answer any request as plait's offline demo model would, for unscripted or benchmark runs.

    A schema sent through a schema channel (a ``json_schema`` response format or a tool the
    model must call) gets an instance of it, as ``schema_responder`` gives but without its
    strict checks; any other request gets what ``DemoChatModel`` answers, which fills in a
    schema written in the prompt.

    Example:
        ``with LoopbackServer(demo_responder) as server: ...``

    """
    from plait.models.demo import DemoChatModel

    messages = _messages(body)
    if (reply := _from_schema(role, body, messages)) is not None:
        return reply
    return str(DemoChatModel()._reply(messages, role).generations[0].message.content)


Responder = Callable[[str, dict[str, Any]], ReplySpec | str]


def schema_responder(*, refuse_json_schema: bool = False, refuse_tools: bool = False) -> Responder:
    """A responder that behaves like a server enforcing the schema a request carries.

    It reads the schema only from the request's structure, never from the prompt text, so a
    test passes only if plait sends the schema through a schema channel:

    - ``response_format`` ``json_schema``: the content is a deterministic instance of
      ``json_schema.schema`` (``$ref``, ``anyOf``, ``enum``, ``const`` and the bounds on
      strings, numbers and arrays are kept).
    - ``tools``: when ``tool_choice`` names a function, is ``"required"``, or is ``"auto"``
      (or absent) with a single tool and no ``response_format``, a ``tool_call`` of that
      function with an instance of its ``parameters``.
    - ``response_format`` ``json_object`` (JSON mode): ``{"answer": <canned text>}``, valid
      JSON that matches no schema plait asks for, as a small model answers when the schema is
      only in the prompt.
    - anything else: the demo model's canned text (the reviser's starts with
      "[demo] Revised", and the demo reviewer approves a draft that does, so review loops end).

    A ``json_schema`` with ``strict: true``, or a function with ``strict: true``, whose schema
    OpenAI would reject (an object without ``additionalProperties: false`` or without every
    property in ``required``) gets HTTP 400, recorded as ``"refused"``.

    Args:
        refuse_json_schema: Answer HTTP 400 to any ``json_schema`` response format, as servers
            without structured outputs do; recorded as ``"refused"``.
        refuse_tools: Answer HTTP 400 to any request that carries ``tools``.

    Example:
        ``with LoopbackServer(schema_responder(refuse_json_schema=True)) as server: ...``

    """

    def respond(role: str, body: dict[str, Any]) -> ReplySpec | str:
        response_format = body.get("response_format") or {}
        kind = response_format.get("type")
        if refuse_tools and body.get("tools"):
            return _refused("'tools' is not supported with this model.", "tools")
        # langchain-openai recognises this wording (OpenAI's own) and warns to use tools.
        if refuse_json_schema and kind == "json_schema":
            message = "'response_format' of type 'json_schema' is not supported with this model."
            return _refused(message, "response_format")
        if problem := _strict_problem(body):
            return _refused(*problem)
        messages = _messages(body)
        if (reply := _from_schema(role, body, messages)) is not None:
            return reply
        answer = _canned_text(role, messages)
        return text(json.dumps({"answer": answer})) if kind == "json_object" else answer

    return respond


class LoopbackServer:
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint on 127.0.0.1, scripted per role.

    The role of a request is read from its first system message ("You are the <role>..."),
    as every plait prompt starts. Requests are answered on their own threads, so concurrent
    requests with a delay overlap as they would on a real endpoint. Every request is recorded;
    one the script does not cover gets HTTP 500 and is kept in ``violations``.

    Args:
        script: For each role, its replies in order (a ``str`` is a text reply), or a callable
            ``(role, body) -> ReplySpec | str`` that answers every request, such as
            ``demo_responder`` or ``schema_responder()``.
        models: The model ids ``GET /v1/models`` lists, as OpenAI's endpoint does; None (the
            default) answers that route with 404, as servers without it do. Each ``GET`` is
            recorded in ``gets`` (its path).
        api_key: When given, every request without ``Authorization: Bearer <api_key>`` gets
            HTTP 401 with an OpenAI-style error body; it is recorded (a ``POST`` as kind
            ``"unauthorized"``) but is no script violation.

    Example:
        ``with LoopbackServer({"writer": ["draft", status(500)]}) as server:``
        ``    model = ChatOpenAI(model="m", base_url=server.base_url, api_key="k")``

    """

    def __init__(
        self,
        script: Script,
        *,
        models: Sequence[str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.models = None if models is None else list(models)
        self.api_key = api_key
        self._responder = script if callable(script) else None
        mapping = {} if callable(script) else script
        self._scripted = {role: len(replies) for role, replies in mapping.items()}
        self._queues = {role: deque(replies) for role, replies in mapping.items()}
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.gets: list[str] = []

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
            made = {
                role: sum(1 for r in self.requests if r.role == role and r.kind != "unauthorized")
                for role in self._queues
            }
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
        if not self._authorized():
            with contextlib.suppress(ValueError, AttributeError):
                body = json.loads(raw)
                self.server.owner._record(_role(body), body, "unauthorized")
            return self._unauthorized()
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
        elif reply.kind in ("status", "refused"):
            phrase = http.HTTPStatus(reply.code).phrase
            payload = reply.body if reply.body is not None else _error(phrase, _type(reply.code))
            self._send(reply.code, json.dumps(payload).encode(), reply.headers)
        else:
            self._send(200, json.dumps(_completion(body, reply)).encode())

    def do_GET(self) -> None:
        owner = self.server.owner
        with owner._lock:
            owner.gets.append(self.path)
        if not self._authorized():
            return self._unauthorized()
        if self.path.split("?")[0] != MODELS or owner.models is None:
            return self._refuse(404, f"no route for GET {self.path}", "unknown_url")
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "plait"} for m in owner.models
        ]
        self._send(200, json.dumps({"object": "list", "data": data}).encode())

    def _authorized(self) -> bool:
        wanted = self.server.owner.api_key
        return wanted is None or self.headers.get("Authorization") == f"Bearer {wanted}"

    def _unauthorized(self) -> None:
        # OpenAI's own wording and body for a wrong key; the key sent is never echoed back.
        message = "Incorrect API key provided."
        body = _error(message, "invalid_request_error", "invalid_api_key")
        self._send(401, json.dumps(body).encode())

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


def _messages(body: Mapping[str, Any]) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "developer": SystemMessage, "assistant": AIMessage}
    return [kinds.get(m.get("role"), HumanMessage)(_content(m)) for m in body.get("messages", [])]


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


def _refused(message: str, param: str) -> ReplySpec:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    return ReplySpec("refused", code=400, body={"error": error})


def _from_schema(role: str, body: Mapping[str, Any], messages: list[Any]) -> ReplySpec | None:
    """An instance of the schema the request sends through a schema channel, or None."""
    # The prompt only steers demo quirks (the reviewer approves a revision), not the schema.
    filler = _Filler(role, "\n".join(str(m.content) for m in messages))
    tool = _called_tool(body)
    if isinstance(tool, ReplySpec):
        return tool
    if tool is not None:
        parameters = tool.get("parameters") or {}
        return tool_call(tool["name"], filler.fill(parameters, parameters.get("$defs", {})))
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return text(json.dumps(filler.fill(schema, schema.get("$defs", {}))))
    return None


def _called_tool(body: Mapping[str, Any]) -> dict[str, Any] | ReplySpec | None:
    """The function a request makes the model call, a refusal if it names none, or None."""
    functions = [t.get("function") or {} for t in body.get("tools") or []]
    choice = body.get("tool_choice", "auto")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        found = next((f for f in functions if f.get("name") == name), None)
        return found or _refused(f"tool_choice names {name!r}, not in tools.", "tool_choice")
    if choice == "required" and functions:
        return functions[0]
    # With a choice, a real model would pick; one tool and nothing else asked leaves no choice.
    if choice == "auto" and len(functions) == 1 and not body.get("response_format"):
        return functions[0]
    return None


def _strict_problem(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """OpenAI's 400 message and param for a strict schema it would reject, or None."""
    response_format = body.get("response_format") or {}
    spec = response_format.get("json_schema") or {}
    strict = response_format.get("type") == "json_schema" and spec.get("strict")
    if strict and (where := _not_strict(spec.get("schema") or {})):
        name = spec.get("name")
        return f"Invalid schema for response_format '{name}': {where}", "response_format"
    for i, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") or {}
        if function.get("strict") and (where := _not_strict(function.get("parameters") or {})):
            name = function.get("name")
            return (
                f"Invalid schema for function '{name}': {where}",
                f"tools[{i}].function.parameters",
            )
    return None


def _not_strict(schema: Mapping[str, Any], path: tuple[Any, ...] = ()) -> str | None:
    """Why ``schema`` breaks OpenAI's strict-mode rules, in OpenAI's words, or None."""
    context = f"In context={path}, "
    if not path and (kind := schema.get("type")) != "object":
        got = f"'type: \"{kind}\"'"
        return f"{context}schema must be a JSON Schema of 'type: \"object\"', got {got}."
    properties = schema.get("properties") or {}
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return context + "'additionalProperties' is required to be supplied and to be false."
        if missing := [key for key in properties if key not in schema.get("required", [])]:
            return (
                context + "'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
    children: list[tuple[tuple[Any, ...], Any]] = [
        (("properties", key), sub) for key, sub in properties.items()
    ]
    children += [(("anyOf", i), sub) for i, sub in enumerate(schema.get("anyOf") or [])]
    for defs in ("$defs", "definitions"):
        children += [((defs, key), sub) for key, sub in (schema.get(defs) or {}).items()]
    if isinstance(schema.get("items"), dict):
        children.append((("items",), schema["items"]))
    return next((p for sub, child in children if (p := _not_strict(child, path + sub))), None)


def _completion(body: Mapping[str, Any], reply: ReplySpec) -> dict[str, Any]:
    prompt = "\n".join(_content(m) for m in body.get("messages", []))
    usage = {"prompt_tokens": tokens(prompt), "completion_tokens": tokens(reply.content)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    finish = "stop"
    if reply.kind == "tool_call":
        call = {"name": reply.tool, "arguments": reply.content}
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        message["content"] = None
        message["tool_calls"] = [{"id": call_id, "type": "function", "function": call}]
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "loopback"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }

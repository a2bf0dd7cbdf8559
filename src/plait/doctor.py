"""Check every endpoint a run would use, before a run pays to find out that one is broken.

Each endpoint the settings name (the main model, each role's, each fallback, each member of a
pool) is checked concurrently: an OpenAI-compatible one gets ``GET {base}/models`` (up? key
accepted? model listed?), then each gets one tiny structured call through ``call_model`` on a
fresh context, so the structured-output method is found exactly as a run finds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import httpx
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, SecretStr

from plait.models.methods import payload, plan
from plait.models.pool import ModelPool, PoolMember
from plait.models.spec import KEY_VARIABLES, load_chat_model
from plait.nodes.calls import call_model, endpoint_key, text_of
from plait.nodes.structured import parse_reply
from plait.settings import RunSettings

OPENAI_URL = "https://api.openai.com/v1"  # where ChatOpenAI goes without a base URL
NO_KEY = "not-needed"  # what plait sends to a local server when no key is set
MESSAGES = [
    SystemMessage("You are the doctor. Answer with ok set to true."),
    HumanMessage("Is this endpoint working? Set ok to true."),
]


class Ping(BaseModel):  # the smallest structure worth asking for
    ok: bool


@dataclass
class Check:
    """What was found about one endpoint; ``as_json()`` is its entry in ``--json``."""

    endpoint: str
    model: str
    roles: list[str]
    reachable: bool | None = None
    latency_ms: float | None = None
    listed: bool | None = None
    key: str | None = None
    key_env: str | None = None
    structured: str | None = None
    error: str | None = None
    warning: str | None = None
    offline: bool = False  # the demo model: nothing to reach
    listing: str | None = None  # what /models said, in words for the one-line report

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_json(self) -> dict[str, Any]:
        shown = {k: v for k, v in asdict(self).items() if k not in ("offline", "listing")}
        return {**shown, "ok": self.ok}


@dataclass
class Target:
    """One concrete endpoint to check, and the roles it serves."""

    label: str
    client: Any
    structured: str  # the method pinned for it, or "auto"
    spec: str | None = None  # the spec naming it; None for a pool member
    member: str | None = None  # the pool member's name
    roles: list[str] = field(default_factory=list)


def targets(settings: RunSettings) -> list[Target]:
    """Every endpoint the settings name, once each, a pool as its members (or ModelSpecError)."""
    named = [(settings.model, "default")]
    named += [(spec, role) for role, spec in settings.model_for.items()]
    named += [(spec, "fallback") for spec in settings.fallbacks]
    found: dict[int, Target] = {}
    for spec, role in named:
        client = load_chat_model(
            spec, base_url=settings.base_url, profiles=settings.models, pools=settings.pools
        )
        if isinstance(client, ModelPool):
            items = [
                Target(f"{spec} ({m.name})", m.model, m.structured, member=m.name)
                for m in client.members
            ]
        else:
            pinned = (settings.models.get(spec) or {}).get("structured") or settings.structured
            items = [Target(spec, client, pinned, spec=spec)]
        for item in items:  # clients are cached, so one endpoint named twice is one object
            target = found.setdefault(id(item.client), item)
            target.roles += [] if role in target.roles else [role]
    return list(found.values())


async def check_all(settings: RunSettings, *, timeout: float = 20.0) -> list[Check]:
    """Check every endpoint at once, so a dead one costs its timeout once, not per endpoint."""
    settings.check_models()  # a bad spec is a usage error (exit 2), found before any request
    return list(await asyncio.gather(*(check(settings, t, timeout) for t in targets(settings))))


async def check(settings: RunSettings, target: Target, timeout: float) -> Check:
    """Check one endpoint; every fault ends up in ``error``, none is raised."""
    from plait.models.demo import DemoChatModel

    offline = isinstance(target.client, DemoChatModel)
    name = "demo" if offline else endpoint_key(target.client)
    result = Check(name, target.label, target.roles, offline=offline)
    result.key_env = key_variable(target.client, settings)
    try:
        if _url(target.client):
            await _list_models(result, target.client, timeout)
        if result.ok:
            await _structured_call(result, settings, target, timeout)
    except Exception as exc:  # a bug here must not cost the other endpoints their lines
        result.error = f"internal error: {type(exc).__name__}: {_first_line(exc)}"
    return result


async def _list_models(result: Check, client: Any, timeout: float) -> None:
    base, key = _url(client), _secret(client)
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            started = time.perf_counter()  # after building the client, which takes a while
            response = await http.get(
                f"{base}/models", headers={"Authorization": f"Bearer {key}"} if key else {}
            )
    except httpx.HTTPError as exc:
        return _failed(result, exc, client, timeout)
    result.reachable, result.latency_ms, status = True, _ms(started), response.status_code
    if status in (401, 403):
        result.key, result.error = "rejected", _rejected(status, client, result.key_env)
        return
    try:  # no /models (proxies, some servers) is no failure: the structured call decides
        served = {item["id"] for item in response.json()["data"]} if status == 200 else None
    except (ValueError, KeyError, TypeError):
        served = None
    if served is None:
        result.listing = f"no /models (HTTP {status})"
        return
    result.key, result.listed = _key_verdict(client), client.model_name in served
    result.listing = "listed" if result.listed else "not listed by /models"
    if not result.listed:
        # A warning, not a failure: servers alias names (Azure deployments, Ollama tags), and
        # the structured call is what proves the model is served.
        result.warning = f"{client.model_name!r} is not among the {len(served)} models listed"


async def _structured_call(
    result: Check, settings: RunSettings, target: Target, timeout: float
) -> None:
    context = _context(settings, target, timeout)
    started = time.perf_counter()
    try:
        reply, _ = await call_model(context, "doctor", "doctor", list(MESSAGES), schema=Ping)
    except Exception as exc:
        _failed(result, exc, target.client, timeout)
        return
    result.reachable = True
    result.latency_ms = result.latency_ms if result.latency_ms is not None else _ms(started)
    if not result.offline and result.key is None:
        result.key = _key_verdict(target.client)
    # A method is recorded only when there was a choice; a single-method plan is its method.
    found = context.methods.get(endpoint_key(target.client))
    result.structured = found or plan(target.client, target.structured)[0]
    args = payload(reply)
    try:
        parse_reply(text_of(reply) if args is None else json.dumps(args), Ping)
    except ValueError as exc:  # a run re-asks with the problem: a warning, not a failure
        result.warning = f"its reply did not match the schema ({exc})"


def _context(settings: RunSettings, target: Target, timeout: float) -> Any:
    """A fresh run context whose only model is the target: no fallbacks, one attempt."""
    options = {"retries": 0, "timeout": timeout}
    model = target.spec or settings.model
    context = replace(
        settings, model=model, model_for={}, fallbacks=[], options=options, methods={}
    ).context()
    if target.member is not None:
        # A run leases a member and calls it with the member's pinned method; a pool of that
        # one member makes the call path do just that.
        alone = PoolMember(target.client, 1, name=target.member, structured=target.structured)
        context.model = ModelPool(members=[alone])
    return context


def _failed(result: Check, exc: BaseException, client: Any, timeout: float) -> None:
    """One helpful line for a failed request, read from the whole exception chain."""
    chain = _chain(exc)
    status = next((s for e in chain if isinstance(s := getattr(e, "status_code", None), int)), None)
    where = _url(client) or result.endpoint
    result.reachable = True if status is not None else result.reachable
    if status in (401, 403):
        result.key, result.error = "rejected", _rejected(status, client, result.key_env)
    elif status == 404:
        name = getattr(client, "model_name", None) or result.model
        result.error = f"{where} does not serve model {name!r} (HTTP 404)"
    elif status is not None:
        body = next((b for e in chain if isinstance(b := getattr(e, "body", None), dict)), {})
        message = body.get("message") or (body.get("error") or {}).get("message")
        result.error = f"{where} answered HTTP {status}: {_first_line(message or exc)}"
    elif any(isinstance(e, (TimeoutError, httpx.TimeoutException)) for e in chain):
        # Up (if /models answered) but too slow; a timeout before any answer: not reachable.
        result.reachable = bool(result.reachable)
        result.error = f"{where} did not answer within {timeout:g} s (--timeout)"
    elif any(isinstance(e, (OSError, httpx.TransportError)) for e in chain):
        refused = any(isinstance(e, ConnectionRefusedError) for e in chain)
        why = "connection refused" if refused else _first_line(chain[-1])
        result.reachable, result.error = False, f"cannot reach {where}: {why}"
    else:
        result.error = _first_line(exc)


def _rejected(status: int, client: Any, variable: str | None) -> str:
    if variable:
        return f"key rejected (HTTP {status}); the key comes from ${variable}"
    if _secret(client) in (None, NO_KEY):
        return f"key rejected (HTTP {status}); no key is set (a provider variable or api_key_env)"
    return f"key rejected (HTTP {status}); no known variable holds it (see api_key_env)"


def _key_verdict(client: Any) -> str:
    """What an answer says about the key: a placeholder sent means none was needed."""
    return "not needed" if _secret(client) in (None, NO_KEY) else "accepted"


def key_variable(client: Any, settings: RunSettings) -> str | None:
    """The environment variable the client's key came from, found by value; never the key."""
    secret = _secret(client)
    if secret in (None, NO_KEY):
        return None
    names = [p["api_key_env"] for p in settings.models.values() if p.get("api_key_env")]
    return next((n for n in [*names, *KEY_VARIABLES.values()] if os.environ.get(n) == secret), None)


def _secret(client: Any) -> str | None:
    # LangChain integrations keep their key in a pydantic SecretStr field.
    fields = type(client).model_fields if isinstance(client, BaseModel) else {}
    values = (getattr(client, name, None) for name in fields)
    return next((v.get_secret_value() for v in values if isinstance(v, SecretStr)), None)


def _url(client: Any) -> str | None:
    """The base URL of an OpenAI-compatible client (the only kind with /models); else None."""
    from langchain_openai import ChatOpenAI

    if isinstance(client, ChatOpenAI):
        return (client.openai_api_base or OPENAI_URL).rstrip("/")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every cause and context behind it, outermost first."""
    chain = [exc]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) and inner not in chain:
        chain.append(inner)
    return chain


def _first_line(what: object) -> str:
    from plait.secrets import redact

    # Redacted before it is cut: an endpoint's answer may echo the key it was sent.
    text = redact(str(what)).strip()
    return text.splitlines()[0][:200] if text else type(what).__name__


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)

"""Model specs and profiles to LangChain chat models, whatever the provider.

A spec is ``demo``, ``<provider>:<model>`` (anything ``init_chat_model`` takes), a bare model
name whose provider LangChain can infer (``gpt-4o-mini``, ``claude-sonnet-4-5``), ``pool:FILE``
or ``pool:NAME``, or the name of a profile from ``plait.toml`` (a spec plus its endpoint, the
name of its key's environment variable, model arguments and a structured-output method).
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait.errors import ModelSpecError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

SPEC_FORMS = (
    "'demo', '<provider>:<model>' (any provider init_chat_model knows), a model name whose "
    "provider LangChain infers (gpt-4o-mini), 'pool:<file.json or pool name>', or a profile "
    "name from plait.toml"
)
OPENAI_DEFAULT = "openai:gpt-4o-mini"
# plait retries and times out calls itself (plait.models.resilience), so the client must
# not retry too; its own timeout is only a backstop for calls made outside plait.
MAX_RETRIES = 0
TIMEOUT_SECONDS = 600.0
# The environment variable each provider's LangChain integration reads its key from; a missing
# one is reported before a run starts. Providers not listed (ollama) need no key.
KEY_VARIABLES = {
    "openai": "OPENAI_API_KEY",
    "azure_openai": "AZURE_OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google_genai": "GOOGLE_API_KEY",
    "mistralai": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY",
    "cohere": "COHERE_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "together": "TOGETHER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "perplexity": "PPLX_API_KEY",
}
# Where a provider's endpoint goes when a base URL is given; most integrations take base_url.
BASE_URL_VARIABLES = {"openai": "OPENAI_BASE_URL"}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a spec into ``(provider, model)``; ``demo`` is ``("demo", "demo")``.

    A bare name gets the provider LangChain infers for it (``gpt-4o-mini`` -> ``openai``).

    Raises:
        ModelSpecError: the spec is empty, malformed, or a bare name with no known provider.
    """
    text = spec.strip()
    if text == "demo":
        return "demo", "demo"
    if not text or " " in text:
        raise ModelSpecError(f"malformed model spec {spec!r}: expected {SPEC_FORMS}")
    provider, sep, name = text.partition(":")
    if not sep:
        inferred = _infer_provider(text)
        if inferred is None:
            raise ModelSpecError(
                f"cannot tell which provider serves model {spec!r}; write it as "
                f"PROVIDER:{text} (e.g. openai:{text}, ollama:{text})"
            )
        return inferred, text
    if not provider.strip() or not name.strip():
        raise ModelSpecError(f"malformed model spec {spec!r}: expected {SPEC_FORMS}")
    return provider.strip().lower(), name.strip()


def _infer_provider(name: str) -> str | None:
    # LangChain's own inference, so a bare name means what init_chat_model would make of it.
    # It is private; if a release moves it, bare names need a provider prefix.
    try:
        from langchain.chat_models.base import _attempt_infer_model_provider
    except ImportError:  # pragma: no cover - depends on the installed langchain
        return None
    return _attempt_infer_model_provider(name)


def default_model_spec() -> tuple[str, str | None]:
    """The model used when none is given, and a notice to show the user (or None).

    ``PLAIT_MODEL``, else ``openai:gpt-4o-mini`` when ``OPENAI_API_KEY`` is set, else the
    offline demo model.
    """
    if spec := os.environ.get("PLAIT_MODEL", "").strip():
        return spec, None
    if os.environ.get("OPENAI_API_KEY"):
        return OPENAI_DEFAULT, None
    return (
        "demo",
        "no model configured (--model, PLAIT_MODEL, OPENAI_API_KEY or plait.toml): using the "
        "offline demo model, whose replies are canned",
    )


# One client per (spec, endpoint) per event loop, so the branches of a run share a connection
# pool, while a second asyncio.run() in the same process (run, then resume) gets clients of
# its own: an async HTTP client cannot outlive the loop it was first used on.
_clients: weakref.WeakKeyDictionary[Any, dict[str, BaseChatModel]] = weakref.WeakKeyDictionary()
_outside_loops: dict[str, BaseChatModel] = {}


def load_chat_model(
    spec: str,
    *,
    base_url: str | None = None,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    pools: Mapping[str, Mapping[str, Any]] | None = None,
) -> BaseChatModel:
    """Build (once per event loop) the chat model a spec or profile name names.

    Args:
        spec: A spec or a profile name (see the module's docstring).
        base_url: The endpoint for specs whose profile names none (``--base-url``).
        profiles: Named model profiles (``[models.NAME]`` in ``plait.toml``).
        pools: Named worker pools (``[pools.NAME]``), for ``pool:NAME``.

    Raises:
        ModelSpecError: malformed spec, unknown provider, missing provider package, or a
            missing key.
    """
    profile = dict((profiles or {}).get(spec) or {"model": spec})
    if spec in (pools or {}) or spec.startswith("pool:"):
        profile = {"model": spec}
    profile.setdefault("base_url", base_url)
    key = json.dumps([profile, os.environ.get("OPENAI_BASE_URL")], sort_keys=True, default=str)
    try:
        cache = _clients.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:
        cache = _outside_loops
    if key not in cache:
        cache[key] = _load(profile, profiles or {}, pools or {})
    return cache[key]


def clear_model_cache() -> None:
    """Forget every model client (tests change credentials between runs)."""
    _clients.clear()
    _outside_loops.clear()


def _load(
    profile: Mapping[str, Any],
    profiles: Mapping[str, Mapping[str, Any]],
    pools: Mapping[str, Mapping[str, Any]],
) -> BaseChatModel:
    spec = profile["model"]
    if spec.startswith("pool:"):
        from plait.models.pool import load_pool, pool_from_dict

        name = spec.partition(":")[2]
        if name in pools:
            return pool_from_dict(pools[name], f"pool {name!r}", profiles)
        return load_pool(name, profiles)
    provider, name = parse_spec(spec)
    if provider == "demo":
        from plait.models.demo import DemoChatModel

        return DemoChatModel()
    base_url = profile.get("base_url") or _env_base_url(provider)
    key = _api_key(spec, provider, profile.get("api_key_env"), base_url)
    args = dict(profile.get("args") or {})
    if provider == "openai":
        return _openai(name, base_url, key, args)
    if base_url:
        args["base_url"] = base_url
    if key:
        args["api_key"] = key
    try:
        from langchain.chat_models import init_chat_model

        model = init_chat_model(name, model_provider=provider, **args)
    except ImportError as exc:
        raise ModelSpecError(
            f"model provider {provider!r} needs a package that is not installed: {exc}"
        ) from None
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSpecError(f"cannot use model '{provider}:{name}': {first}") from None
    if "max_retries" in type(model).model_fields:
        # Before its SDK client is made from it. The field is the integration's, checked just
        # above; BaseChatModel does not declare it.
        model.max_retries = MAX_RETRIES  # type: ignore[attr-defined]
    if provider == "anthropic":
        _own_async_pool(model)
    return model


def _own_async_pool(model: Any) -> None:
    # langchain-anthropic shares one async HTTP pool per base URL across the whole process (an
    # lru_cache), so a second event loop in the process (run, then resume) would reuse
    # connections of a closed loop; the same bug as langchain-ai/langchain#35783 for OpenAI.
    # Each client gets a pool of its own (plait already keeps one client per loop). It sets
    # the integration's cached client, a private attribute: re-check on upgrades.
    import anthropic

    params = dict(model._client_params)
    pool = anthropic.DefaultAsyncHttpxClient(base_url=params["base_url"])
    model.__dict__["_async_client"] = anthropic.AsyncAnthropic(**params, http_client=pool)


def _env_base_url(provider: str) -> str | None:
    variable = BASE_URL_VARIABLES.get(provider)
    return (os.environ.get(variable) or None) if variable else None


def _api_key(spec: str, provider: str, variable: str | None, base_url: str | None) -> str | None:
    """The key from the profile's variable or the provider's; None when the client finds it.

    Raises:
        ModelSpecError: a named or known key variable is unset and no local endpoint is given.
    """
    if variable:
        if not os.environ.get(variable):
            raise ModelSpecError(
                f"model {spec!r} takes its key from ${variable} (api_key_env), which is not set"
            )
        return os.environ[variable]
    known = KEY_VARIABLES.get(provider)
    if known is None or os.environ.get(known):
        return os.environ.get(known) if known else None
    if base_url:  # a local server (vLLM, llama.cpp, Ollama) ignores it; clients want one
        return "not-needed"
    raise ModelSpecError(
        f"model {spec!r} needs ${known}, or --base-url for a local {provider}-compatible server"
    )


def _openai(
    name: str, base_url: str | None, key: str | None, args: dict[str, Any]
) -> BaseChatModel:
    import httpx
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        # langchain-openai shares one default async HTTP client across the whole process, and
        # so across event loops (langchain-ai/langchain#35783); each client gets its own.
        http_async_client=httpx.AsyncClient(timeout=TIMEOUT_SECONDS),
        model=name,
        base_url=base_url,
        api_key=key,
        max_retries=MAX_RETRIES,
        timeout=TIMEOUT_SECONDS,
        **args,
    )

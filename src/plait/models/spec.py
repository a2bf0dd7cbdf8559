"""Model specs (``demo``, ``openai:<name>``, ``<provider>:<model>``) to LangChain chat models."""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import TYPE_CHECKING, Any

from plait.errors import ModelSpecError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

SPEC_FORMS = (
    "'demo', 'openai:<model>', 'pool:<file.json>', or '<provider>:<model>' "
    "(any provider init_chat_model knows)"
)
OPENAI_DEFAULT = "openai:gpt-4o-mini"
# plait retries and times out calls itself (plait.models.resilience), so the client must
# not retry too; its own timeout is only a backstop for calls made outside plait.
MAX_RETRIES = 0
TIMEOUT_SECONDS = 600.0


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a spec into ``(provider, model)``; ``demo`` is ``("demo", "demo")``.

    Raises:
        ModelSpecError: the spec is empty or not of a known form.
    """
    text = spec.strip()
    if text == "demo":
        return "demo", "demo"
    provider, sep, name = text.partition(":")
    if not sep or not provider.strip() or not name.strip() or " " in text:
        raise ModelSpecError(f"malformed model spec {spec!r}: expected {SPEC_FORMS}")
    return provider.strip().lower(), name.strip()


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
        "no model configured (--model, PLAIT_MODEL or OPENAI_API_KEY): using the offline demo model, whose replies are canned",
    )


# One client per (spec, endpoint) per event loop, so the branches of a run share a connection
# pool, while a second asyncio.run() in the same process (run, then resume) gets clients of
# its own: an async HTTP client cannot outlive the loop it was first used on.
_clients: weakref.WeakKeyDictionary[Any, dict[tuple, BaseChatModel]] = weakref.WeakKeyDictionary()
_outside_loops: dict[tuple, BaseChatModel] = {}


def load_chat_model(spec: str, *, base_url: str | None = None) -> BaseChatModel:
    """Build (once per event loop) the chat model a spec names.

    Raises:
        ModelSpecError: malformed spec, unknown provider, missing provider package, or an
            ``openai:`` spec with neither an API key nor a base URL.
    """
    provider, name = parse_spec(spec)
    key = (provider, name, base_url or os.environ.get("OPENAI_BASE_URL") or None)
    try:
        cache = _clients.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:
        cache = _outside_loops
    if key not in cache:
        cache[key] = _load(*key)
    return cache[key]


def clear_model_cache() -> None:
    """Forget every model client (tests change credentials between runs)."""
    _clients.clear()
    _outside_loops.clear()


def _load(provider: str, name: str, base_url: str | None) -> BaseChatModel:
    if provider == "demo":
        from plait.models.demo import DemoChatModel

        return DemoChatModel()
    if provider == "openai":
        return _openai(name, base_url)
    if provider == "pool":
        from plait.models.pool import load_pool

        return load_pool(name)
    try:
        from langchain.chat_models import init_chat_model

        return init_chat_model(name, model_provider=provider)
    except ImportError as exc:
        raise ModelSpecError(
            f"model provider {provider!r} needs a package that is not installed: {exc}"
        ) from None
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSpecError(f"cannot use model '{provider}:{name}': {first}") from None


def _openai(name: str, base_url: str | None) -> BaseChatModel:
    import httpx
    from langchain_openai import ChatOpenAI

    key = os.environ.get("OPENAI_API_KEY")
    if not key and not base_url:
        raise ModelSpecError(
            f"model 'openai:{name}' needs OPENAI_API_KEY, or --base-url / OPENAI_BASE_URL "
            "for a local OpenAI-compatible server"
        )
    # Local servers (vLLM, llama.cpp, Ollama) ignore the key but the client requires one.
    return ChatOpenAI(
        # langchain-openai shares one default async HTTP client across the whole process, and
        # so across event loops (langchain-ai/langchain#35783); each client gets its own.
        http_async_client=httpx.AsyncClient(timeout=TIMEOUT_SECONDS),
        model=name,
        base_url=base_url,
        api_key=key or "not-needed",
        max_retries=MAX_RETRIES,
        timeout=TIMEOUT_SECONDS,
    )

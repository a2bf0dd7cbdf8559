"""Keys never stored, never printed.

Two rules, each in one place:

- ``check_base_url``: a URL that carries a credential is refused wherever it enters plait
  (``--base-url``, a ``plait.toml`` profile, a pool member), because settings are stored with
  the thread and shown by ``plait threads show``. Keys belong in environment variables.
- ``redact``: what an endpoint says goes into errors, and an endpoint may echo the request's
  ``Authorization`` header or its key. Errors pass through ``redact`` before the thread index
  stores them and before the CLI prints anything.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from plait.errors import ModelSpecError

MASK = "***"

# Query parameters that carry a credential (compared lower-case, '-' read as '_').
CREDENTIAL_PARAMS = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "auth", "sig", "signature", "secret"}
)
# Environment variables whose values are keys; plus the providers' own (KEY_VARIABLES) and the
# profiles' api_key_env names, which need not follow the pattern.
KEY_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")
# Shorter values would turn ordinary words in a message into "***" and hide nothing useful.
MIN_SECRET_LENGTH = 8

# In a path, a key is "sk-..." / "sk_...", or a run of 24+ letters and digits with both in it
# (hyphenated names such as "my-gpt4-deployment-2024" are runs of short words, not keys).
_LONG_RUN = re.compile(r"[A-Za-z0-9]{24,}")

# Token characters stop at quotes, brackets and backslashes, so a redacted JSON or Rich
# markup string stays well-formed.
_CHAR = r"[^\s'\"\\,;\[\](){}<>&#]"
_TOKEN = _CHAR + "+"
_PARAMS = "|".join(name.replace("_", "[_-]") for name in sorted(CREDENTIAL_PARAMS, key=len)[::-1])
_PATTERNS = re.compile(
    "|".join(
        (
            # A digit or 20+ characters: "Bearer tokens expire" is prose, not a key.
            rf"(?P<bearer>\bbearer\s+)(?={_CHAR}*\d|{_CHAR}{{20}}){_CHAR}{{8,}}",
            r"(?<![A-Za-z0-9])sk[-_][A-Za-z0-9_-]{8,}",
            # In a query any credential name; elsewhere only the unmistakable ones, since
            # messages say "key=value" and "token=..." as words.
            rf"(?P<param>[?&](?:{_PARAMS})=|(?<![A-Za-z0-9_-])(?:api[_-]?key|apikey|access[_-]token)=){_TOKEN}",
            r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"\\]+@",
        )
    ),
    re.IGNORECASE,
)

_key_names: set[str] = set()


def remember_key_names(names: Iterable[str | None]) -> None:
    """Add variable names (a profile's ``api_key_env``) whose values ``redact`` hides."""
    _key_names.update(name for name in names if name)


def check_base_url(url: str, where: str = "--base-url", key_hint: str = "OPENAI_API_KEY") -> str:
    """``url`` if plait may store and show it; one line that never quotes it otherwise.

    Args:
        url: The base URL as given.
        where: What gave it, for the message (``--base-url``, ``[models.local] base_url``).
        key_hint: Where the key belongs instead: a variable name, or ``api_key_env``.

    Raises:
        ModelSpecError: not an http(s) URL with a host, or a key in the user, password,
            query or path (exit code 2).
    """
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- a port that is not a number raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ModelSpecError(
            f"{where} must be an http:// or https:// URL with a host, such as "
            "http://127.0.0.1:8000/v1 (the value given is not shown)"
        )
    if parts.username is not None or parts.password is not None:
        found = "a user or password"
    elif any(_param(name) in CREDENTIAL_PARAMS for name, _ in parse_qsl(parts.query, True)):
        found = "a key in its query"
    elif any(_token_segment(segment) for segment in parts.path.split("/")):
        found = "what looks like a key in its path"
    else:
        return url
    raise ModelSpecError(
        f"{where} must not carry credentials ({found}, not shown; keys are never saved "
        f"with a thread): put the key in {key_hint}"
    )


def redact(text: str, names: Iterable[str] = ()) -> str:
    """``text`` with every key it may hold replaced by ``***``.

    Hidden: the values of the environment variables that hold keys (``*_API_KEY``,
    ``*_TOKEN``, ``*_SECRET``, the providers' own, ``names`` and remembered ``api_key_env``
    names), ``Bearer <token>`` (a token with a digit, or 20+ characters), ``sk-...`` tokens,
    credential values in a URL query (``?key=``, ``&api_key=``, ``token``, ``sig``...) and
    ``api_key=``/``access_token=`` anywhere, and the user and password of URLs.
    """
    if not text:
        return text
    values = _values_regex(_env_secrets(tuple(sorted({*_key_names, *names}))))
    if values is not None:
        text = values.sub(MASK, text)
    return _PATTERNS.sub(_masked_match, text)


def scrub(data: Any, names: Iterable[str] = ()) -> Any:
    """``data`` (JSON-like: dicts, lists, strings) with ``redact`` applied to every string."""
    if isinstance(data, str):
        return redact(data, names)
    if isinstance(data, dict):
        return {scrub(key, names): scrub(value, names) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [scrub(value, names) for value in data]
    return data


def mask_url(url: str | None) -> str | None:
    """``url`` for display: its user, password, every query value and any path segment that
    looks like a key replaced by ``***``.
    """
    if not url:
        return url
    parts = urlsplit(url)
    path = "/".join(MASK if _token_segment(s) else s for s in parts.path.split("/"))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    query = "&".join(f"{k}={MASK}" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _param(name: str) -> str:
    return name.lower().replace("-", "_")


def _token_segment(segment: str) -> bool:
    if segment[:3].lower() in ("sk-", "sk_") and len(segment) >= 9:
        return True
    return any(
        re.search(r"[A-Za-z]", run) and re.search(r"\d", run) for run in _LONG_RUN.findall(segment)
    )


def _masked_match(match: re.Match[str]) -> str:
    prefix = match["bearer"] or match["param"] or match["scheme"]
    if match["scheme"]:
        return prefix + MASK + "@"
    return (prefix or "") + MASK


def _env_secrets(names: tuple[str, ...]) -> tuple[str, ...]:
    """The values of the key variables now set, longest first (a key may contain another)."""
    # The providers' variables, once a model has been loaded: importing plait.models.spec
    # loads LangChain (a second), too much for `plait threads`; until then no provider has
    # been called, and every variable it names ends in _API_KEY anyway.
    spec = sys.modules.get("plait.models.spec")
    wanted = {*names, *(spec.KEY_VARIABLES.values() if spec else ())}
    values = {
        value
        for name, value in os.environ.items()
        if (name in wanted or name.upper().endswith(KEY_SUFFIXES))
        and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    return tuple(sorted(values, key=len, reverse=True))


@functools.lru_cache(maxsize=8)
def _values_regex(values: tuple[str, ...]) -> re.Pattern[str] | None:
    # Compiled once per set of values: the environment rarely changes within a process.
    return re.compile("|".join(map(re.escape, values))) if values else None

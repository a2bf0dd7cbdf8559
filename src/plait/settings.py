"""What a thread is run with. Stored in the thread index, so ``resume`` rebuilds the same run."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from plait.errors import ModelSpecError, OptionError
from plait.graphs.registry import RUN_OPTIONS
from plait.models.context import PlaitContext
from plait.models.resilience import Budget, CallPolicy
from plait.models.spec import load_chat_model
from plait.state.usage import AgentUsage

RUN_DEFAULTS = {option.name: option.default for option in RUN_OPTIONS}


@dataclass
class RunSettings:
    """Models, options, budgets and approvals of a thread. Secrets are never part of it.

    Args:
        model: The model spec for every role.
        model_for: Per-role model specs.
        base_url: The OpenAI-compatible endpoint for ``openai:`` specs.
        fallbacks: Model specs tried in order when a role's model keeps failing.
        options: ``--set`` options: the graph factory's and the run's (timeout, retries...).
        max_tokens: Stop the thread once it has used this many tokens.
        max_cost: Stop the thread once it has cost this many US dollars.
        max_calls: Stop the thread once it has made this many model calls.
        approve_before: Nodes before which the run pauses for a person's approval.
        models: Named model profiles (from ``plait.toml``): name -> ``{"model": SPEC,
            "base_url"?, "api_key_env"?, "args"?, "structured"?, "limit"?, "price"?}``; a spec
            anywhere above may be one of these names.
        pools: Named worker pools (from ``plait.toml``): name -> ``{"strategy"?, "members":
            [{"model": SPEC or profile name, "base_url"?, "limit"?, "capabilities"?,
            "name"?}]}``; ``pool:NAME`` names one.
        structured: The structured-output method for models whose profile names none:
            ``auto`` (strongest the endpoint accepts), ``json_schema``, ``function_calling``,
            ``json_mode`` or ``prompt``.
        prices: USD per million tokens, ``[input, output]``, by model name (from ``plait.toml``).
        methods: The structured-output method each endpoint was found to accept, recorded as
            the thread runs so a resume does not ask again.
    """

    model: str = "demo"
    model_for: dict[str, str] = field(default_factory=dict)
    base_url: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None
    max_cost: float | None = None
    max_calls: int | None = None
    approve_before: list[str] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    structured: str = "auto"
    prices: dict[str, list[float]] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> RunSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})

    def override(self, **changes: Any) -> RunSettings:
        """A copy with the given (non-None) settings changed; ``model_for`` and ``options``
        are merged key by key.
        """
        changes = {k: v for k, v in changes.items() if v is not None}
        for merged in ("model_for", "options"):
            if merged in changes:
                changes[merged] = {**getattr(self, merged), **changes[merged]}
        return replace(self, **changes)

    def option(self, name: str) -> Any:
        return self.options.get(name, RUN_DEFAULTS.get(name))

    def check_models(self) -> None:
        """Load every model spec now, so a bad one fails before a thread is created.

        Raises:
            ModelSpecError: a spec is malformed or lacks its credentials, or the base URL is
                not an http(s) URL or carries a key (it would be stored with the thread).
        """
        from plait.secrets import check_base_url, remember_key_names

        if self.base_url is not None:
            check_base_url(self.base_url)
        for name, profile in self.models.items():  # plait.toml checked them; the API may not
            if profile.get("base_url") is not None:
                hint = "a variable named by api_key_env"
                check_base_url(profile["base_url"], f"profile {name!r} base_url", hint)
        # So that errors hide these keys too, whatever their variables are called.
        remember_key_names(p.get("api_key_env") for p in self.models.values())
        for spec in {self.model, *self.model_for.values(), *self.fallbacks}:
            load_chat_model(spec, base_url=self.base_url, profiles=self.models, pools=self.pools)

    def context(self) -> PlaitContext:
        """The run context these settings describe."""
        return PlaitContext(
            model=self.model,
            model_for=dict(self.model_for),
            base_url=self.base_url,
            fallbacks=list(self.fallbacks),
            policy=CallPolicy(attempts=self.option("retries") + 1, timeout=self.option("timeout")),
            timeout_for=_role_timeouts(self.option("role_timeouts")),
            budget=Budget(self.max_tokens, self.max_cost, self.max_calls),
            models=self.models,
            pools=self.pools,
            structured=self.structured,
            methods=dict(self.methods),
            prices=self.all_prices(),
        )

    def all_prices(self) -> dict[str, list[float]]:
        """``prices``, plus each profile's own price under its model's name."""
        from plait.models.spec import parse_spec

        prices = dict(self.prices)
        for profile in self.models.values():
            if profile.get("price") is not None:
                with contextlib.suppress(ModelSpecError):  # check_models reports the spec
                    prices.setdefault(parse_spec(profile["model"])[1], list(profile["price"]))
        return prices


def seed_budget(context: PlaitContext, usage: Mapping[str, AgentUsage], calls: int = 0) -> None:
    """Count what the thread already spent, so a budget covers the whole thread on resume.

    ``calls`` is the thread's count of requests sent: it includes calls in flight when a
    process died, paid for but missing from ``usage``.
    """
    budget = context.budget
    budget.tokens = sum(
        u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in usage.values()
    )
    budget.cost = sum(u.get("cost", 0.0) for u in usage.values())
    budget.calls = max(calls, sum(u.get("calls", 0) for u in usage.values()))


def _role_timeouts(pairs: list[str] | None) -> dict[str, float]:
    timeouts: dict[str, float] = {}
    for pair in pairs or []:
        role, _, seconds = pair.partition("=")
        try:
            timeouts[role.strip()] = float(seconds)
        except ValueError:
            raise OptionError(f"role_timeouts takes ROLE=SECONDS items, got {pair!r}") from None
    return timeouts

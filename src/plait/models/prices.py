"""What model calls cost: USD per million input and output tokens, by model name.

A price is looked up in this order, and the first that knows the model wins:

1. ``overrides``: the ``[prices]`` table of the user's ``plait.toml``, ``{"my-model": [0.20,
   0.80]}`` (input, output per million tokens);
2. the JSON file named by ``PLAIT_PRICES``, in the same shape;
3. plait's own fake models (``demo``, ``scripted``) and local providers (``ollama``): free;
4. the price data of the ``genai-prices`` package (maintained by the pydantic team), which
   ships inside the package: plait never asks it to fetch newer prices, so no lookup touches
   the network.

In 1 and 2 an exact name wins, then the longest name that the model's name starts with, so
``"gpt-4o"`` also prices ``"gpt-4o-2024-08-06"``. A pool member's name, ``"gpt-4o-mini@gpu1"``,
is priced as ``"gpt-4o-mini"``. A model none of them knows has no price (``price_of`` returns
``None``) and its calls cost 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from plait.errors import UsageError

if TYPE_CHECKING:
    from decimal import Decimal

    from genai_prices.types import TieredPrices

Price = tuple[float, float]

# Names plait's fake chat models report (plait.models.demo, plait.testing.scripted): free.
FREE_MODELS = frozenset({"demo", "scripted"})
# Providers that run models on the user's own machine: free unless priced.
LOCAL_PROVIDERS = frozenset({"demo", "ollama"})

# LangChain's provider names (the part before ':' in a model spec) -> genai-prices' provider
# ids, where they differ. A name not listed is passed on as it is; genai-prices recognises many
# (e.g. "cohere", "groq", "deepseek"). A provider genai-prices does not know (huggingface,
# nvidia, ...) is dropped and the model is matched by its name alone.
GENAI_PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "azure_openai": "azure",
    "azure_ai": "azure",
    "anthropic": "anthropic",
    "google_genai": "google",
    "google_vertexai": "google",
    "google_anthropic_vertex": "google",  # genai-prices' google falls back to anthropic's models
    "bedrock": "aws",
    "bedrock_converse": "aws",
    "mistralai": "mistral",
    "xai": "x-ai",
    "together": "together",
    "fireworks": "fireworks",
}


def price_of(
    model_name: str,
    *,
    provider: str | None = None,
    overrides: Mapping[str, Sequence[float]] | None = None,
) -> Price | None:
    """(input, output) USD per million tokens, or ``None`` when no source knows the model."""
    if overrides:
        price = _match(_as_table(overrides), model_name)
        if price is not None:
            return price
    price = _match(_file_table(os.environ.get("PLAIT_PRICES") or None), model_name)
    if price is not None:
        return price
    return _known_price(model_name, provider)


def cost_of(
    model_name: str,
    input_tokens: int,
    output_tokens: int,
    *,
    provider: str | None = None,
    overrides: Mapping[str, Sequence[float]] | None = None,
) -> float:
    """USD for one call; 0.0 for a model with no price (check ``price_of(...) is None``)."""
    price = price_of(model_name, provider=provider, overrides=overrides)
    if price is None:
        return 0.0
    per_in, per_out = price
    return (input_tokens * per_in + output_tokens * per_out) / 1_000_000


def _match(table: Mapping[str, Price], model_name: str) -> Price | None:
    """The exact name's price, else the longest prefix's; ``"m@gpu1"`` starts with ``"m"``."""
    if model_name in table:
        return table[model_name]
    matches = [name for name in table if model_name.startswith(name)]
    return table[max(matches, key=len)] if matches else None


def _as_table(prices: Mapping[str, Sequence[float]]) -> dict[str, Price]:
    try:
        return {name: (float(p[0]), float(p[1])) for name, p in prices.items()}
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise UsageError(
            f"[prices] must map model names to [input_per_million, output_per_million] ({exc})"
        ) from None


@lru_cache(maxsize=8)
def _file_table(path: str | None) -> dict[str, Price]:
    if not path:
        return {}
    try:
        extra = json.loads(Path(path).read_text())
        return {name: (float(p[0]), float(p[1])) for name, p in extra.items()}
    except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise UsageError(
            f"PLAIT_PRICES file {path!r} must be JSON like "
            f'{{"model": [input_per_million, output_per_million]}} ({exc})'
        ) from None


def _known_price(model_name: str, provider: str | None) -> Price | None:
    # Text after the last '@' is a pool member's label: "gpt-4o-mini@gpu1" is gpt-4o-mini.
    base = model_name.rpartition("@")[0] or model_name
    if base in FREE_MODELS or (provider or "").lower() in LOCAL_PROVIDERS:
        return (0.0, 0.0)
    price = _genai_price(base, provider)
    if price is None and base != model_name:  # Vertex AI's own names contain '@' too
        price = _genai_price(model_name, provider)
    return price


@lru_cache(maxsize=512)
def _genai_price(model_name: str, provider: str | None) -> Price | None:
    # Imported here, not at the top: importing genai_prices takes ~150 ms, and a run of the
    # demo model or `plait --help` never needs it. Only its bundled price data is used:
    # genai_prices fetches newer data only when asked to (genai_prices.UpdatePrices), which
    # plait never does.
    import genai_prices
    from genai_prices import data_snapshot

    provider_id = GENAI_PROVIDER_IDS.get(provider, provider) if provider else None
    if provider_id is not None and not data_snapshot.find_provider_by_id(
        data_snapshot.get_snapshot().providers, provider_id
    ):
        provider_id = None  # a provider genai-prices does not know: match by model name alone
    try:
        found = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=0, output_tokens=0), model_name, provider_id=provider_id
        )
    except LookupError:
        return None
    # plait counts only input and output tokens, so it uses the basic per-million input and
    # output prices: no cached-token or audio prices, and of tiered prices (e.g. dearer above
    # 200k input tokens) only the base tier.
    per_in, per_out = _base(found.model_price.input_mtok), _base(found.model_price.output_mtok)
    if per_in is None and per_out is None:
        return None  # priced, but not per token (images, audio seconds, requests)
    return (per_in or 0.0, per_out or 0.0)


def _base(price: Decimal | TieredPrices | None) -> float | None:
    from genai_prices.types import TieredPrices  # loaded already: only _genai_price calls this

    if price is None:
        return None
    return float(price.base if isinstance(price, TieredPrices) else price)

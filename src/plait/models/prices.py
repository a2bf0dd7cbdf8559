"""What model calls cost: USD per million input and output tokens, by model name.

Unknown and local models cost 0 unless priced. Add or override prices with a JSON file named
by ``PLAIT_PRICES``: ``{"my-model": [0.20, 0.80]}`` (input, output per million tokens).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from plait.errors import UsageError

# Public list prices, USD per 1M tokens (input, output). Prefix matches cover dated variants.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


@lru_cache(maxsize=8)
def _table(extra_path: str | None) -> dict[str, tuple[float, float]]:
    table = dict(PRICES)
    if extra_path:
        try:
            extra = json.loads(Path(extra_path).read_text())
            table.update({name: (float(p[0]), float(p[1])) for name, p in extra.items()})
        except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise UsageError(
                f"PLAIT_PRICES file {extra_path!r} must be JSON like "
                f'{{"model": [input_per_million, output_per_million]}} ({exc})'
            ) from None
    return table


def price_of(model_name: str) -> tuple[float, float]:
    """(input, output) USD per million tokens; the longest matching prefix wins; else free."""
    table = _table(os.environ.get("PLAIT_PRICES") or None)
    if model_name in table:
        return table[model_name]
    matches = [name for name in table if model_name.startswith(name)]
    return table[max(matches, key=len)] if matches else (0.0, 0.0)


def cost_of(model_name: str, input_tokens: int, output_tokens: int) -> float:
    """USD for one call."""
    per_in, per_out = price_of(model_name)
    return (input_tokens * per_in + output_tokens * per_out) / 1_000_000

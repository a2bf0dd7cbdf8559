"""Turning model replies into pydantic models: the JSON in a reply is repaired where possible
and validated; for methods that need it, the JSON schema goes in the prompt.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

# The line after this marker is the JSON schema the reply must match (json_mode and prompt
# methods); the demo model reads it when it is asked that way.
SCHEMA_MARKER = "Reply with only a JSON object that matches this JSON schema:"

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


@lru_cache(maxsize=256)  # building a JSON schema costs more than the rest of a call's framework
def schema_instructions(schema: type[BaseModel]) -> str:
    """The text appended to a prompt that asks for ``schema``."""
    return f"\n\n{SCHEMA_MARKER}\n{json.dumps(schema.model_json_schema(), separators=(',', ':'))}"


def extract_json(text: str) -> Any:
    """Parse the JSON object in a reply, repairing the common slips.

    Handles code fences, prose around the object, and trailing commas.

    Raises:
        ValueError: no JSON object can be recovered.
    """
    if fenced := _FENCE.search(text):
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the reply contains no JSON object")
    candidate = text[start : end + 1]
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        try:
            return json.loads(_TRAILING_COMMA.sub(r"\1", candidate))
        except json.JSONDecodeError as exc:
            raise ValueError(f"the reply is not valid JSON ({exc.msg} at char {exc.pos})") from None


def parse_reply(text: str, schema: type[T]) -> T:
    """Validate a text reply against ``schema`` (nulls a strict schema forced are dropped).

    Raises:
        ValueError: with a message fit to send back to the model as feedback.
    """
    from plait.models.methods import without_filled_nulls

    data = without_filled_nulls(extract_json(text), schema)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'reply'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(problems) from None

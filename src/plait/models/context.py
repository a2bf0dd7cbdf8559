"""The run context: which model serves which role. Passed at invoke time, never checkpointed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel


@dataclass
class PlaitContext:
    """What a run needs that is not state: models (a spec string or a chat model object).

    Args:
        model: The default model for every role, e.g. ``"demo"``, ``"openai:gpt-4o-mini"``,
            or a LangChain chat model instance.
        model_for: Per-role overrides, keyed by role name (``"planner"``, ``"reviewer"``...).
        base_url: The OpenAI-compatible endpoint for ``openai:`` specs.

    Example:
        ``await graph.ainvoke({"task": "..."}, context=PlaitContext(model="demo"))``
    """

    model: str | BaseChatModel = "demo"
    model_for: Mapping[str, str | BaseChatModel] = field(default_factory=dict)
    base_url: str | None = None

    def model_for_role(self, role: str) -> BaseChatModel:
        """The chat model that serves ``role``."""
        from plait.models.spec import load_chat_model

        choice = self.model_for.get(role, self.model)
        if isinstance(choice, str):
            return load_chat_model(choice, base_url=self.base_url)
        return choice

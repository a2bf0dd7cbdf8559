"""Model specs to chat models, the offline demo model, and usage accounting."""

from plait.models.context import PlaitContext
from plait.models.demo import DemoChatModel
from plait.models.spec import default_model_spec, load_chat_model, parse_spec

__all__ = ("DemoChatModel", "PlaitContext", "default_model_spec", "load_chat_model", "parse_spec")

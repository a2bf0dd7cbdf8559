"""State schemas and their reducers: the keys every pattern shares, and the merge rules."""

from plait.state.common import CommonState, merge_by_key
from plait.state.log import Envelope, append_log, envelope
from plait.state.usage import AgentUsage, add_usage, total_tokens

__all__ = (
    "AgentUsage",
    "CommonState",
    "Envelope",
    "add_usage",
    "append_log",
    "envelope",
    "merge_by_key",
    "total_tokens",
)

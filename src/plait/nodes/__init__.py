"""Agent nodes and the helpers that build them: asking for text, asking for structure."""

from plait.nodes.agent import Reply, agent_node, ask, ask_for, run_context, user_prompt
from plait.nodes.kit import node, record_failure, say
from plait.nodes.structured import extract_json, parse_reply

__all__ = (
    "Reply",
    "agent_node",
    "ask",
    "ask_for",
    "extract_json",
    "node",
    "parse_reply",
    "record_failure",
    "run_context",
    "say",
    "user_prompt",
)

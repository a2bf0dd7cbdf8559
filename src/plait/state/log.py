"""The inter-agent message log: one envelope per message an agent sends or receives."""

from __future__ import annotations

import time
import uuid

from typing_extensions import TypedDict

# Long texts are already in the state under their own keys; the log records who said what to
# whom, so it keeps a bounded preview and the checkpoint stays small.
PREVIEW_CHARS = 280
# Every checkpoint stores the whole state, so a log that grew without bound would make a long
# run's database grow quadratically. The state keeps the latest envelopes; every envelope ever
# written is still stored once, as its node's write, and `plait threads log ID` reads them all.
LOG_WINDOW = 10


class Envelope(TypedDict):
    """One message between agents."""

    id: str
    sender: str
    receiver: str
    kind: str
    correlation_id: str
    ts: float
    content: str


def envelope(
    sender: str, receiver: str, kind: str, content: str, *, correlation_id: str = ""
) -> Envelope:
    """Build an envelope; ``correlation_id`` ties a reply to its request (a subtask id, say)."""
    text = content if len(content) <= PREVIEW_CHARS else content[:PREVIEW_CHARS] + "…"
    return Envelope(
        id=uuid.uuid4().hex,
        sender=sender,
        receiver=receiver,
        kind=kind,
        correlation_id=correlation_id,
        ts=time.time(),
        content=text,
    )


def append_log(left: list[Envelope] | None, right: list[Envelope] | None) -> list[Envelope]:
    """Append envelopes, skipping any id already present (a replayed write adds nothing), and
    keep the latest ``LOG_WINDOW``.
    """
    if not right:
        return list(left or [])
    seen = {e["id"] for e in left or []}
    merged = [*(left or []), *(e for e in right if e["id"] not in seen)]
    return merged[-LOG_WINDOW:]

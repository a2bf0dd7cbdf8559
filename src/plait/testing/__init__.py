"""Test plait graphs, and your own, without a network or a key.

Two fakes, one for each layer a test may want to exercise:

- ``ScriptedChatModel`` is a LangChain chat model that answers each role from a script, in
  order. Pass it as the model of a ``PlaitContext`` to test a graph's logic: which roles are
  asked, in what order, with what context, and what happens when one of them fails.
- ``LoopbackServer`` is an OpenAI-compatible HTTP server on 127.0.0.1. Point the real
  ``ChatOpenAI`` at ``server.base_url`` to test the client path too: latency, HTTP errors and
  plait's retries of them, timeouts, malformed bodies and dropped connections.

Both fail loudly: a call the script does not cover, or a script not used up, makes
``verify()`` (called on leaving their ``with`` block) raise ``ScriptError``.

Example:
    ``with ScriptedChatModel({"writer": ["a draft"], "reviewer": ["approved"]}) as model:``
    ``    await graph.ainvoke({"task": "t"}, context=PlaitContext(model=model))``

"""

from plait.testing.scripted import Entry, ScriptedChatModel, ScriptError
from plait.testing.server import (
    LoopbackServer,
    Recorded,
    ReplySpec,
    demo_responder,
    drop,
    malformed,
    schema_responder,
    status,
    text,
    tool_call,
)

__all__ = (
    "Entry",
    "LoopbackServer",
    "Recorded",
    "ReplySpec",
    "ScriptError",
    "ScriptedChatModel",
    "demo_responder",
    "drop",
    "malformed",
    "schema_responder",
    "status",
    "text",
    "tool_call",
)

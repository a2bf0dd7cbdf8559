"""The benchmark's model: one pure responder, served in-process or over loopback HTTP.

Every reply and every latency is a function of the request alone (the role, the parameters in
the task's ``[bench ...]`` tag, and which part or draft the request is about), so plait and the
plain-LangGraph baseline get the same replies after the same waits, in-process and through the
``LoopbackServer`` alike, and the critical path can be computed without running anything.

``BenchModel`` sleeps with ``asyncio.sleep`` on the async path and ``time.sleep`` on the sync
path, as a real client's I/O would block on each.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

TAG = re.compile(r"\[bench ([^\]]*)\]")
ROLE = re.compile(r"You are the ([\w-]+)")
PART = re.compile(r"part (\d+) of (\d+)")
DRAFT = re.compile(r"draft v(\d+)")
# Workers in the benchmark plans: roster roles that are not also roles of the review loop.
WORKER_ROLES = ("researcher", "analyst", "coder", "qa_tester")
HEAVY_SIGMA = 0.75  # lognormal spread of the heavy-tailed latency (p99 is about 5.7x median)
HEAVY_CAP = 12.0  # ...capped at this multiple of the median, so one run cannot take minutes
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")


def bench_task(kind: str, **params: Any) -> str:
    """A task text carrying the benchmark parameters, e.g. ``n=64 lat=0.2 dist=heavy``."""
    tag = " ".join(f"{k}={v}" for k, v in params.items())
    return f"Benchmark {kind} task [bench {tag}]"


def params_of(texts: Sequence[str]) -> dict[str, str]:
    for text in texts:
        if found := TAG.search(text):
            return dict(pair.split("=", 1) for pair in found.group(1).split())
    return {}


def tokens(text: str) -> int:
    """Four characters a token, as plait's scripted model and loopback server count."""
    return max(1, math.ceil(len(text) / 4))


def filler(size: int, seed: int) -> str:
    words = [WORDS[(seed + i) % len(WORDS)] for i in range(size // 6 + 1)]
    return " ".join(words)[:size]


def latency(params: dict[str, str], key: str) -> float:
    """Seconds the model takes for the call named ``key`` (``planner``, ``worker:7``...)."""
    median = float(params.get("lat", 0))
    if median <= 0:
        return 0.0
    if params.get("dist", "fixed") == "fixed":
        return median
    rng = random.Random(zlib.crc32(f"{params.get('seed', 1)}:{key}".encode()))
    return min(median * math.exp(rng.gauss(0.0, HEAVY_SIGMA)), median * HEAVY_CAP)


def orchestrator_critical_path(params: dict[str, str]) -> float:
    """Plan + slowest worker + synthesis: the wall time with zero framework time."""
    n = int(params["n"])
    slowest = max(latency(params, f"worker:{i}") for i in range(1, n + 1))
    return latency(params, "planner") + slowest + latency(params, "synthesizer")


def plan_reply(n: int) -> str:
    subtasks = [
        {
            "id": f"s{i}",
            "role": WORKER_ROLES[(i - 1) % len(WORKER_ROLES)],
            "description": f"part {i} of {n}: cover aspect {i} of the task",
        }
        for i in range(1, n + 1)
    ]
    return json.dumps({"subtasks": subtasks})


def respond(role: str, texts: Sequence[str]) -> tuple[str, float]:
    """The reply text and latency for a request of ``role`` whose messages are ``texts``."""
    params = params_of(texts)
    size = int(params.get("size", 400))
    last = texts[-1] if texts else ""
    whole = "\n".join(texts)
    if role == "planner":
        return plan_reply(int(params.get("n", 3))), latency(params, "planner")
    if (part := PART.search(last)) and role not in ("synthesizer", "reviewer", "reviser"):
        i = int(part.group(1))
        return f"result of part {i}: {filler(size, i)}", latency(params, f"worker:{i}")
    drafts = [int(v) for v in DRAFT.findall(whole)]
    version = drafts[-1] if drafts else 0
    if role == "reviewer":
        approve_at = int(params.get("approve", 0))  # 0: never approve
        approved = approve_at > 0 and version + 1 >= approve_at
        feedback = (
            "" if approved else f"tighten section {version + 1}; " + filler(size // 4, version)
        )
        return (
            json.dumps({"approved": approved, "feedback": feedback}),
            latency(params, f"reviewer:{version}"),
        )
    if role == "writer":
        return f"draft v0: {filler(size, 0)}", latency(params, "writer")
    if role == "reviser":
        return (
            f"draft v{version + 1}: {filler(size, version + 1)}",
            latency(params, f"reviser:{version}"),
        )
    return f"{role} output: {filler(size, len(role))}", latency(params, role)


def message_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)


def loopback_responder(role: str, body: dict[str, Any]) -> Any:
    """The same responder for ``LoopbackServer``: the reply after its latency."""
    from plait.testing import text

    texts = [m.get("content") or "" for m in body.get("messages", [])]
    texts = [t if isinstance(t, str) else "".join(p.get("text", "") for p in t) for t in texts]
    content, seconds = respond(role, texts)
    return text(content, delay=seconds)


class Tally:
    """Calls and tokens a model served (thread-safe: the sync baseline calls from a pool)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.by_role: dict[str, int] = {}

    def add(self, role: str, tokens_in: int, tokens_out: int) -> None:
        with self.lock:
            self.calls += 1
            self.input_tokens += tokens_in
            self.output_tokens += tokens_out
            self.by_role[role] = self.by_role.get(role, 0) + 1


class BenchModel(BaseChatModel):
    """A chat model answering with ``respond``: async sleep on async calls, blocking on sync."""

    _tally: Tally = PrivateAttr(default_factory=Tally)

    @property
    def _llm_type(self) -> str:
        return "plait-bench"

    @property
    def tally(self) -> Tally:
        return self._tally

    def reset(self) -> None:
        self._tally = Tally()

    def _reply(self, messages: list[BaseMessage]) -> tuple[ChatResult, float]:
        texts = [message_text(m) for m in messages]
        system = next((t for m, t in zip(messages, texts, strict=True) if m.type == "system"), "")
        found = ROLE.search(system)
        role = found.group(1) if found else "unknown"
        content, seconds = respond(role, texts)
        tokens_in, tokens_out = tokens("\n".join(texts)), tokens(content)
        self._tally.add(role, tokens_in, tokens_out)
        message = AIMessage(
            content=content,
            usage_metadata={
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
            response_metadata={"model_name": "bench"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)]), seconds

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        result, seconds = self._reply(messages)
        if seconds > 0:
            time.sleep(seconds)
        return result

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        result, seconds = self._reply(messages)
        if seconds > 0:
            await asyncio.sleep(seconds)
        return result

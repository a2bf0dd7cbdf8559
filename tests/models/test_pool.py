"""Worker pools: how calls are spread over endpoints, and each endpoint's concurrency limit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from plait.errors import ExitCode, ModelSpecError
from plait.models.pool import ModelPool, PoolMember, load_pool
from plait.testing import ScriptedChatModel


class Gauge(BaseChatModel):
    """Answers after a pause and records how many of its calls overlapped at most."""

    pause: float = 0.02
    now: int = 0
    peak: int = 0
    served: int = 0

    @property
    def _llm_type(self) -> str:
        return "gauge"

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(self.pause)
        self.now -= 1
        self.served += 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))])

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        raise NotImplementedError


def call(pool: ModelPool, role: str):
    return pool.ainvoke([HumanMessage("hi")], config={"metadata": {"plait_role": role}})


async def test_round_robin_takes_turns():
    members = [ScriptedChatModel({"worker": ["a", "a"]}), ScriptedChatModel({"worker": ["b", "b"]})]
    pool = ModelPool(members=[PoolMember(m) for m in members], strategy="round_robin")
    replies = [(await call(pool, "worker")).content for _ in range(4)]
    assert replies == ["a", "b", "a", "b"]
    for member in members:
        member.verify()


async def test_each_member_keeps_its_concurrency_limit():
    big, small = Gauge(), Gauge()
    pool = ModelPool(
        members=[PoolMember(big, limit=3), PoolMember(small, limit=1)], strategy="least_loaded"
    )
    await asyncio.gather(*(call(pool, "worker") for _ in range(16)))
    assert big.peak <= 3 and small.peak <= 1
    assert big.served + small.served == 16
    # Least-loaded relative to the limit: the bigger endpoint takes the bigger share.
    assert big.served > small.served > 0


async def test_capability_sends_a_role_only_to_members_that_serve_it():
    coder = ScriptedChatModel({"coder": ["code"]})
    writer = ScriptedChatModel({"writer": ["words"]})
    pool = ModelPool(
        members=[
            PoolMember(coder, capabilities=frozenset({"coder"})),
            PoolMember(writer, capabilities=frozenset({"writer"})),
        ],
        strategy="capability",
    )
    assert (await call(pool, "writer")).content == "words"
    assert (await call(pool, "coder")).content == "code"
    with pytest.raises(ModelSpecError, match="no pool member serves role 'analyst'"):
        await call(pool, "analyst")
    coder.verify()
    writer.verify()


def test_usage_names_the_member_that_served(tmp_path, cli):
    pool_file = tmp_path / "pool.json"
    pool_file.write_text(
        json.dumps(
            {
                "strategy": "round_robin",
                "members": [{"model": "demo", "name": "east"}, {"model": "demo", "name": "west"}],
            }
        )
    )
    done = cli("run", "orchestrator", "t", "--model", f"pool:{pool_file}", "--json")
    assert done.exit_code == 0, done.stderr
    usage = json.loads(done.stdout)["usage"]
    served = {name for agent in usage.values() for name in agent["models"]}
    assert served == {"demo@east", "demo@west"}


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("{not json", "is not JSON"),
        ('{"members": []}', "at least one member"),
        ('{"strategy": "random", "members": [{"model": "demo"}]}', "unknown pool strategy"),
        ('{"members": [{"model": "demo", "limit": 0}]}', "at least 1"),
        ('{"members": [{"name": "x"}]}', "member 0 has no 'model'"),
    ],
)
def test_bad_pool_files_are_usage_errors(tmp_path, cli, content, phrase):
    pool_file = tmp_path / "pool.json"
    pool_file.write_text(content)
    with pytest.raises(ModelSpecError, match=phrase):
        load_pool(str(pool_file))
    result = cli("run", "review", "t", "--model", f"pool:{pool_file}")
    assert result.exit_code == ExitCode.USAGE
    assert phrase in result.stderr


def test_missing_pool_file(cli):
    result = cli("run", "review", "t", "--model", "pool:/nonexistent/pool.json")
    assert result.exit_code == ExitCode.USAGE
    assert "does not exist" in result.stderr

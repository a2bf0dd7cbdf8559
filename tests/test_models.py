"""Model specs, the default model, the OpenAI-compatible client without a key, the offline demo
model, and per-role routing (``--model-for``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from plait import PlaitContext, RunSettings, ask, ask_for
from plait.errors import ModelSpecError
from plait.models import DemoChatModel, default_model_spec, load_chat_model, parse_spec
from plait.testing import LoopbackServer, ScriptedChatModel


def demo() -> Runtime:
    return Runtime(context=PlaitContext(model="demo"))


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("demo", ("demo", "demo")),
        ("  demo\n", ("demo", "demo")),
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("OpenAI:gpt-4o", ("openai", "gpt-4o")),
        ("ollama:llama3.1:8b", ("ollama", "llama3.1:8b")),  # only the first colon splits
    ],
)
def test_parse_spec_valid(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "   ", ":gpt-4o", "openai:", "openai: gpt", "my co:m"])
def test_parse_spec_invalid_names_the_spec_and_the_forms(spec):
    with pytest.raises(ModelSpecError) as raised:
        parse_spec(spec)
    assert f"malformed model spec {spec!r}" in str(raised.value)
    assert "'<provider>:<model>'" in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_default_is_the_demo_model_with_a_notice():
    spec, notice = default_model_spec()
    assert spec == "demo"
    assert "no model configured" in notice and "offline demo model" in notice


def test_default_is_openai_when_a_key_is_set(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert default_model_spec() == ("openai:gpt-4o-mini", None)


def test_plait_model_wins_over_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("PLAIT_MODEL", "ollama:qwen3")
    assert default_model_spec() == ("ollama:qwen3", None)


def test_a_blank_plait_model_is_ignored(monkeypatch):
    monkeypatch.setenv("PLAIT_MODEL", "  ")
    assert default_model_spec()[0] == "demo"


def test_openai_with_a_base_url_needs_no_key():
    model = load_chat_model("openai:m", base_url="http://127.0.0.1:1/v1")
    assert isinstance(model, ChatOpenAI)
    assert (model.model_name, model.openai_api_base) == ("m", "http://127.0.0.1:1/v1")
    assert load_chat_model("openai:m", base_url="http://127.0.0.1:1/v1") is model  # one client


def test_openai_base_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:2/v1")
    assert load_chat_model("openai:m").openai_api_base == "http://127.0.0.1:2/v1"


async def test_openai_without_a_key_talks_to_a_local_server():
    with LoopbackServer({"writer": ["hello"]}) as server:
        model = load_chat_model("openai:local-model", base_url=server.base_url)
        reply = await ask(
            Runtime(context=PlaitContext(model=model)), "writer", "You are the writer.", "t"
        )
    assert reply.value == "hello"
    assert server.requests[0].body["model"] == "local-model"
    assert reply.usage["writer"]["models"] == {"local-model": 1}


async def test_demo_model_is_deterministic_marked_and_reports_usage():
    first = await ask(demo(), "writer", "You are the writer.", "Task: explain CAP")
    again = await ask(demo(), "writer", "You are the writer.", "Task: explain CAP")
    assert first.value == again.value
    assert first.value.startswith("[demo]")
    usage = first.usage["writer"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["models"] == {"demo": 1}
    message = await DemoChatModel().ainvoke([SystemMessage("s"), HumanMessage("h")])
    assert message.usage_metadata["total_tokens"] == (
        message.usage_metadata["input_tokens"] + message.usage_metadata["output_tokens"]
    )


async def test_no_runtime_means_the_default_model():
    reply = await ask(None, "writer", "You are the writer.", "t")
    assert reply.value.startswith("[demo]")


class Step(BaseModel):
    id: str
    role: Literal["alpha", "beta"]
    depends_on: list[str] = []


class Plan(BaseModel):
    steps: list[Step] = Field(min_length=2, max_length=4)


class Review(BaseModel):
    approved: bool
    feedback: str


async def test_demo_fills_a_plan_with_roles_from_the_enum():
    reply = await ask_for(demo(), "planner", "You are the planner.", "Task: t", Plan)
    steps = reply.value.steps
    assert 2 <= len(steps) <= 4
    assert {s.role for s in steps} == {"alpha", "beta"}
    assert len({s.id for s in steps}) == len(steps)
    assert reply.usage["planner"]["calls"] == 1  # valid the first time


async def test_demo_reviewer_rejects_a_first_draft_and_approves_a_revision():
    draft = await ask(demo(), "writer", "You are the writer.", "Task: t")
    first = await ask_for(
        demo(), "reviewer", "You are the reviewer.", f"Task: t\n\nDraft:\n{draft.value}", Review
    )
    assert first.value.approved is False
    revised = await ask(demo(), "reviser", "You are the reviser.", f"Task: t\n\n{draft.value}")
    assert revised.value.startswith("[demo] Revised")
    second = await ask_for(
        demo(), "reviewer", "You are the reviewer.", f"Task: t\n\nDraft:\n{revised.value}", Review
    )
    assert second.value.approved is True


class Bounded(BaseModel):
    votes: int = Field(ge=2, le=5)
    weight: float = Field(gt=1.5, lt=3)
    label: str = Field(max_length=12)


async def test_demo_fills_numbers_and_strings_within_their_bounds():
    # The demo promises a valid instance of any schema a pattern asks for.
    reply = await ask_for(demo(), "judge", "You are the judge.", "Task: t", Bounded)
    assert reply.usage["judge"]["calls"] == 1


async def test_model_for_routes_one_role_to_another_model():
    default = ScriptedChatModel({"writer": ["from default"]})
    planner = ScriptedChatModel({"planner": ["from planner model"]})
    runtime = Runtime(context=PlaitContext(model=default, model_for={"planner": planner}))
    assert (
        await ask(runtime, "planner", "You are the planner.", "t")
    ).value == "from planner model"
    assert (await ask(runtime, "writer", "You are the writer.", "t")).value == "from default"
    default.verify()
    planner.verify()
    assert "planner" not in default.calls and "writer" not in planner.calls


def test_run_settings_build_per_role_clients_from_specs():
    settings = RunSettings(
        model="demo", model_for={"planner": "openai:big"}, base_url="http://127.0.0.1:3/v1"
    )
    context = settings.context()
    assert isinstance(context.model_for_role("writer"), DemoChatModel)
    planner = context.model_for_role("planner")
    assert (planner.model_name, planner.openai_api_base) == ("big", "http://127.0.0.1:3/v1")


def test_model_for_flag_routes_one_role_through_the_cli(cli, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the repo root
    with LoopbackServer({"critic": ["real critique"]}) as server:
        done = cli(
            "run",
            "examples/critique.py:build",
            "t",
            "--model",
            "demo",
            "--model-for",
            "critic=openai:crit-model",
            "--base-url",
            server.base_url,
            "--json",
        )
    assert done.exit_code == 0, done.stderr
    assert server.count() == 1
    usage = json.loads(done.stdout)["usage"]
    assert {agent: u["models"] for agent, u in usage.items()} == {
        "drafter": {"demo": 1},
        "critic": {"crit-model": 1},
        "polisher": {"demo": 1},
    }

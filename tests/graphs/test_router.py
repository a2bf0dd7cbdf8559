"""The router graph: the classifier's route, the fallback on unknown labels and low confidence,
a bad classifier reply, failure and resume."""

from __future__ import annotations

import json

import pytest

from plait import runner
from plait.errors import GraphSetupError
from plait.graphs.router import create_router_graph
from plait.models.context import PlaitContext
from plait.runner import RunFailed, RunSettings
from plait.testing import ScriptedChatModel

TASK = "How many orders shipped late last month?"


def route(label: str, confidence: float = 0.9, reason: str = "it is about orders") -> str:
    return json.dumps({"route": label, "confidence": confidence, "reason": reason})


async def run(model, db, **options):
    return await runner.run(
        "router",
        TASK,
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
    )


async def test_a_confident_label_goes_to_that_route_with_only_the_task(db):
    with ScriptedChatModel(
        {
            "classifier": [route("data_query", reason="SECRET-REASON")],
            "data_query": ["42 orders"],
        }
    ) as model:
        done = await run(model, db)
    state = done.values
    assert done.result == "42 orders"
    assert (state["route"], state["routed_by"], state["route_reason"]) == (
        "data_query",
        "classifier",
        "SECRET-REASON",
    )
    prompt = model.calls["data_query"][0][-1].content
    assert TASK in prompt and "SECRET-REASON" not in prompt
    assert "data_query, document_search, code, general" in model.calls["classifier"][0][-1].content


async def test_low_confidence_goes_to_the_fallback_and_is_recorded(db):
    with ScriptedChatModel(
        {
            "classifier": [route("code", confidence=0.3)],
            "general": ["a general answer"],
        }
    ) as model:
        done = await run(model, db)
    state = done.values
    assert (state["route"], state["routed_by"]) == ("general", "fallback")
    assert state["route_reason"] == "confidence 0.3 for code is below min_confidence 0.5"
    assert state["classification"]["route"] == "code"
    logged = [e for e in state["log"] if e["kind"] == "route"]
    assert [(e["sender"], e["receiver"]) for e in logged] == [("classifier", "general")]
    assert "below min_confidence" in logged[0]["content"]


async def test_an_unknown_label_goes_to_the_configured_fallback_without_a_re_ask(db):
    with ScriptedChatModel(
        {
            "classifier": [route("billing")],
            "support": ["a support answer"],
        }
    ) as model:
        done = await run(
            model, db, routes=["sales", "support"], fallback="support", min_confidence=0.0
        )
    assert (done.values["route"], done.values["routed_by"]) == ("support", "fallback")
    assert "unknown label 'billing'" in done.values["route_reason"]


async def test_labels_match_routes_regardless_of_case_and_spaces(db):
    with ScriptedChatModel({"classifier": [route(" Code ")], "code": ["def f(): ..."]}) as model:
        done = await run(model, db)
    assert (done.values["route"], done.values["routed_by"]) == ("code", "classifier")


async def test_an_unparseable_classification_is_re_asked_then_fails_clearly(db):
    model = ScriptedChatModel({"classifier": ["no idea", "still no idea", '{"route": "code"}']})
    with pytest.raises(RunFailed) as failed:
        await run(model, db)
    model.verify()
    assert "agent 'classifier' did not return a valid Route" in str(failed.value)
    assert "not valid" in model.calls["classifier"][1][-1].content


async def test_a_failed_specialist_resumes_without_classifying_again(db):
    first = ScriptedChatModel({"classifier": [route("code")], "code": [RuntimeError("boom")]})
    with pytest.raises(RunFailed) as failed:
        await run(first, db)
    first.verify()
    with ScriptedChatModel({"code": ["fixed"]}) as second:
        done = await runner.resume(
            failed.value.thread_id, db=db, context=PlaitContext(model=second)
        )
    assert done.result == "fixed" and done.values["route"] == "code"


@pytest.mark.parametrize(
    ("answering", "instructions"),
    [
        ("classifier", "You are the classifier. Decide which route"),  # the pattern's own
        ("writer", "You are the writer. Write a clear, correct answer"),  # plait's role
        ("billing", "You are the billing. Do the part of the task"),  # a generic one
        ("general", "OVERRIDE"),  # an override wins
    ],
)
async def test_each_agent_gets_its_override_the_patterns_text_or_plaits(answering, instructions):
    graph = create_router_graph(
        routes=["billing", "writer", "general"], prompts={"general": "OVERRIDE"}
    ).compile()
    chosen = "billing" if answering == "classifier" else answering
    with ScriptedChatModel({"classifier": [route(chosen)], chosen: ["done"]}) as model:
        await graph.ainvoke({"task": TASK}, context=PlaitContext(model=model))
    assert str(model.calls[answering][0][0].content).startswith(instructions)


def test_factory_rejects_bad_arguments():
    with pytest.raises(
        GraphSetupError, match="fallback 'general' is not a route; choose one of a, b"
    ):
        create_router_graph(routes=["a", "b"])
    with pytest.raises(GraphSetupError, match="min_confidence must be at most 1"):
        create_router_graph(min_confidence=1.5)
    with pytest.raises(GraphSetupError, match="invalid route name 'classifier'"):
        create_router_graph(routes=["classifier", "general"])


@pytest.mark.parametrize("pair", ["fallback=nowhere", "min_confidence=2", "min_confidence=high"])
def test_bad_set_value_is_a_usage_error(cli, pair):
    done = cli("run", "router", TASK, "--model", "demo", "--set", pair)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert pair.split("=")[0] in done.stderr

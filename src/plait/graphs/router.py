"""Router: a classifier labels the request with a route, then that route's specialist answers.

The classifier returns a structured ``Route{route, confidence, reason}``. A label that is not a
configured route, or a confidence below ``min_confidence``, sends the request to the
``fallback`` route instead; ``route``, ``routed_by`` and ``route_reason`` in the state (and
the log) say which route answered and why. Each route is a node of its own name.

With the demo model the classifier picks the first route with confidence 0.8, so the demo run
is classifier -> data_query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, create_model

from plait.errors import GraphSetupError
from plait.graphs.checks import check_node_names
from plait.graphs.options import validated
from plait.models.context import PlaitContext
from plait.nodes.agent import ask, ask_for, user_prompt
from plait.nodes.kit import node, say
from plait.nodes.prompts import role_prompt
from plait.state.common import CommonState

DEFAULT_ROUTES = ("data_query", "document_search", "code", "general")

PROMPTS = {
    "classifier": "You are the classifier. Decide which route's specialist should answer the "
    "request. Give your confidence from 0 to 1 and a one-line reason.",
    "data_query": "You are the data_query specialist. Answer questions about data: say which "
    "query or calculation answers the request, and give the answer.",
    "document_search": "You are the document_search specialist. Answer from documents: say "
    "where the answer is found and quote what matters.",
    "code": "You are the code specialist. Write or explain the code the request asks for.",
    "general": "You are the general assistant. Answer the request directly and concisely.",
}


class RouterState(CommonState, total=False):
    route: str
    routed_by: str  # "classifier" or "fallback"
    route_reason: str
    classification: dict[str, Any]  # the classifier's reply: route, confidence, reason


def route_schema(routes: Sequence[str]) -> type[BaseModel]:
    """The classifier's reply.

    The schema lists the routes, but any label validates: an unknown one goes to the fallback
    route rather than costing a re-ask.
    """
    return create_model(
        "Route",
        route=(
            str,
            Field(description="the route that fits best", json_schema_extra={"enum": list(routes)}),
        ),
        confidence=(float, Field(ge=0, le=1, description="how sure you are, 0 to 1")),
        reason=(str, Field(description="one line: why this route")),
    )


@validated
def create_router_graph(  # noqa: D417 (options: see their Field descriptions)
    *,
    routes: Annotated[
        Sequence[str], Field(description="route names, one specialist each")
    ] = DEFAULT_ROUTES,
    min_confidence: Annotated[
        float,
        Field(ge=0, le=1, description="below this confidence (0 to 1) the fallback route answers"),
    ] = 0.5,
    fallback: Annotated[
        str, Field(description="the route for an unknown label or a low confidence; one of routes")
    ] = "general",
    prompts: Mapping[str, str] | None = None,
) -> StateGraph[RouterState, PlaitContext]:
    """A classifier picks a route with a confidence; that route's specialist answers.

    Args:
        prompts: Role instructions to override, keyed by role (classifier or a route name).

    Returns:
        The uncompiled builder.

    Example:
        ``app = create_router_graph(routes=["billing", "tech", "general"]).compile()``
    """
    routes = check_node_names("route", routes, {"classifier", *RouterState.__annotations__})
    if fallback not in routes:
        raise GraphSetupError(
            f"fallback {fallback!r} is not a route; choose one of {', '.join(routes)}"
        )
    schema = route_schema(routes)
    rules = (
        f"Routes: {', '.join(routes)}. Reply with exactly one of these names. "
        f"Below confidence {min_confidence:g} the request goes to {fallback}."
    )

    @node
    async def classifier(state: RouterState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
        reply = await ask_for(
            runtime,
            "classifier",
            role_prompt("classifier", prompts, PROMPTS),
            user_prompt(state["task"], rules=rules),
            schema,
        )
        verdict: Any = reply.value  # a create_model class: mypy cannot see its fields
        label, confidence = verdict.route.strip(), verdict.confidence
        known = {r.lower(): r for r in routes}.get(label.lower())
        if known is None:
            route, routed_by = fallback, "fallback"
            why = f"unknown label {label!r}; routes are {', '.join(routes)}"
        elif confidence < min_confidence:
            route, routed_by = fallback, "fallback"
            why = f"confidence {confidence:g} for {known} is below min_confidence {min_confidence}"
        else:
            route, routed_by, why = known, "classifier", verdict.reason
        say("classifier", route, "route", f"{routed_by}: {why}")
        return {
            "route": route,
            "routed_by": routed_by,
            "route_reason": why,
            "classification": reply.value.model_dump(),
        }

    def specialist(route: str) -> Any:  # a @node function; kit.node is typed to return Any
        @node
        async def answer(state: RouterState, runtime: Runtime[PlaitContext]) -> dict[str, Any]:
            reply = await ask(
                runtime, route, role_prompt(route, prompts, PROMPTS), user_prompt(state["task"])
            )
            say(route, "user", "result", reply.value)
            return {"result": reply.value}

        return answer

    builder = StateGraph(RouterState, context_schema=PlaitContext)
    builder.add_node("classifier", classifier)
    builder.add_edge(START, "classifier")
    for route in routes:
        builder.add_node(route, specialist(route))
        builder.add_edge(route, END)
    builder.add_conditional_edges("classifier", _chosen_route, list(routes))
    return builder


def _chosen_route(state: RouterState) -> str:
    return state["route"]

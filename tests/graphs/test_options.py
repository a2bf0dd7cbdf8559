"""A graph's options are declared once, in its factory's signature: ``plait graphs show``,
``--set`` and Python calls all read and check them from there, with the same messages."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from plait.errors import ExitCode, GraphSetupError, OptionError
from plait.graphs.loader import build_graph, parse_graph_options
from plait.graphs.options import NOT_OPTIONS, options_model, type_label
from plait.graphs.registry import GRAPHS, RUN_OPTIONS


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", list(GRAPHS))
def test_graphs_show_agrees_with_the_factory_signature(cli, name):
    factory = GRAPHS[name].load_factory()
    params = [
        p
        for p in inspect.signature(factory, eval_str=True).parameters.values()
        if p.name not in NOT_OPTIONS
    ]
    shown = cli("graphs", "show", name, "--json")
    assert shown.exit_code == 0, shown.stderr
    rows = json.loads(shown.stdout)["options"]
    own, run = rows[: len(params)], rows[len(params) :]
    assert [r["name"] for r in own] == [p.name for p in params]
    assert [r["name"] for r in run] == [o.name for o in RUN_OPTIONS]
    for row, param in zip(own, params, strict=True):
        assert row["type"] == type_label(param.annotation), param.name
        default = json.loads(json.dumps(_plain(param.default), default=vars))
        if isinstance(default, list):
            default = [json.loads(json.dumps(d, default=vars)) for d in default]
        assert row["default"] == default, param.name
        assert row["help"], f"{name}: option {param.name} has no description"


def test_listing_reads_summaries_from_the_factory_docstrings():
    for entry in GRAPHS.values():
        doc = inspect.getdoc(entry.load_factory()) or ""
        assert entry.summary == " ".join(doc.split("\n\n")[0].split()).rstrip(".")


# One bad value per graph: (graph, --set pair, the same value as a Python argument).
BAD = [
    ("review", "max_iterations=0", 0),
    ("orchestrator", "on_branch_error=ignore", "ignore"),
    ("pipeline", "attempts=0", 0),
    ("blackboard", "conflict_policy=vote", "vote"),
    ("auction", "min_subtasks=0", 0),
    ("supervisor", "max_steps=lots", "lots"),
    ("router", "min_confidence=2", 2.0),
    ("swarm", "capacity=0", 0),
    ("debate", "debaters=1", 1),
    ("perspectives", "branch_timeout=-1", -1.0),
    ("consensus", "threshold=0", 0.0),
    ("dag", "plan_attempts=0", 0),
    ("map-reduce", "mode=pages", "pages"),
]


@pytest.mark.parametrize(("name", "pair", "value"), BAD, ids=[b[0] for b in BAD])
def test_set_and_python_refuse_a_bad_value_with_the_same_message(name, pair, value):
    assert {b[0] for b in BAD} == set(GRAPHS)
    with pytest.raises(OptionError) as from_set:
        parse_graph_options(name, [pair])
    key = pair.partition("=")[0]
    with pytest.raises(GraphSetupError) as from_python:
        GRAPHS[name].load_factory()(**{key: value})
    assert str(from_set.value) == str(from_python.value)
    assert key in str(from_set.value)


def test_the_cli_shows_the_same_one_line_error(cli):
    done = cli("run", "consensus", "t", "--set", "method=plurality")
    assert done.exit_code == ExitCode.USAGE
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert line == ("error: option 'method' must be one of majority, weighted; got 'plurality'")


def test_an_unknown_option_is_refused_alike():
    with pytest.raises(OptionError, match="graph 'review' has no option 'speed'; valid: max_"):
        parse_graph_options("review", ["speed=9"])
    with pytest.raises(GraphSetupError, match="has no option 'speed'; valid: max_iterations"):
        GRAPHS["review"].load_factory()(speed=9)


def test_set_values_are_read_by_the_annotation():
    assert parse_graph_options(
        "auction", ["bidders=a, b", "decompose=yes", "fallback=42", "timeout=5"]
    ) == {"bidders": ["a", "b"], "decompose": True, "fallback": "42", "timeout": 5.0}
    sources = [{"name": "a", "writes": "solution"}]
    assert parse_graph_options("blackboard", [f"sources={json.dumps(sources)}"]) == {
        "sources": sources
    }
    assert parse_graph_options("debate", ["debaters=none"]) == {"debaters": None}
    with pytest.raises(OptionError, match="option 'decompose' takes true or false, got 'maybe'"):
        parse_graph_options("auction", ["decompose=maybe"])
    with pytest.raises(OptionError, match="takes a finite number"):
        parse_graph_options("router", ["min_confidence=nan"])


def test_options_model_is_built_once_per_factory():
    factory = GRAPHS["review"].load_factory()
    assert options_model(factory) is options_model(factory)
    assert options_model(factory).model_config["extra"] == "forbid"


AUTHORED = '''
from typing import Annotated

from langgraph.graph import END, START, StateGraph
from pydantic import Field

from plait.state.common import CommonState


def build(
    *,
    tone: Annotated[str, Field(description="how the answer sounds")] = "plain",
    drafts: Annotated[int, Field(ge=1, description="drafts to write")] = 2,
) -> StateGraph:
    """A graph of one node."""
    builder = StateGraph(CommonState)
    builder.add_node("answer", lambda state: {"result": f"{tone} x{drafts}"})
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder
'''


@pytest.fixture
def authored(tmp_path) -> str:
    path = tmp_path / "mine.py"
    path.write_text(AUTHORED)
    return f"{path}:build"


def test_an_authored_graph_shows_its_own_options(cli, authored):
    shown = cli("graphs", "show", authored, "--json")
    assert shown.exit_code == 0, shown.stderr
    rows = {r["name"]: r for r in json.loads(shown.stdout)["options"]}
    assert rows["tone"] == {
        "name": "tone",
        "type": "text",
        "default": "plain",
        "help": "how the answer sounds",
    }
    assert rows["drafts"]["type"] == "an int" and rows["drafts"]["ge"] == 1
    assert set(rows) == {"tone", "drafts", *(o.name for o in RUN_OPTIONS)}
    text = cli("graphs", "show", authored)
    assert "drafts: drafts to write (an int, >= 1; default 2)" in text.stdout


def test_an_authored_graph_is_checked_by_its_annotations(cli, authored):
    assert parse_graph_options(authored, ["tone=42", "drafts=3"]) == {"tone": "42", "drafts": 3}
    done = cli("run", authored, "t", "--set", "drafts=lots")
    assert done.exit_code == ExitCode.USAGE
    assert "option 'drafts' takes an int, got 'lots'" in done.stderr
    with pytest.raises(OptionError, match="drafts must be at least 1, got 0"):
        parse_graph_options(authored, ["drafts=0"])
    with pytest.raises(OptionError, match="has no option 'speed'; valid: tone .text., drafts"):
        parse_graph_options(authored, ["speed=1"])
    # From Python (the runner's options), a non-text value for a text option is refused.
    with pytest.raises(OptionError, match="option 'tone' takes text, got 42"):
        build_graph(authored, {"tone": 42}, None)

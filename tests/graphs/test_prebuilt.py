"""Checks every prebuilt graph in the registry gets: a topology snapshot and a CLI run with the
demo model. A new pattern is covered by adding its registry entry and snapshot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from plait.graphs.loader import build_graph
from plait.graphs.registry import GRAPHS

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("name", list(GRAPHS))
def test_topology_matches_snapshot(name):
    mermaid = build_graph(name, {}, None).get_graph().draw_mermaid()
    snapshot = SNAPSHOTS / f"{name}.mmd"
    if os.environ.get("PLAIT_UPDATE_SNAPSHOTS"):
        snapshot.write_text(mermaid)
    assert snapshot.exists(), f"no snapshot for {name}; run with PLAIT_UPDATE_SNAPSHOTS=1"
    assert mermaid == snapshot.read_text()


@pytest.mark.parametrize("name", list(GRAPHS))
def test_runs_from_the_cli_with_the_demo_model(cli, name):
    done = cli("run", name, "Explain the CAP theorem", "--json")
    assert done.exit_code == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "done"
    assert outcome["result"].startswith("[demo]")
    assert outcome["tokens"] > 0
    assert all(u["models"] == {"demo": u["calls"]} for u in outcome["usage"].values())
    listed = json.loads(cli("threads", "--json").stdout)
    assert [(t["thread_id"], t["status"]) for t in listed] == [(outcome["thread_id"], "done")]


@pytest.mark.parametrize("name", list(GRAPHS))
def test_graphs_show_lists_every_option(cli, name):
    shown = cli("graphs", "show", name, "--json")
    assert shown.exit_code == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["mermaid"].startswith("---")
    assert [o["name"] for o in doc["options"]] == [o["name"] for o in GRAPHS[name].option_rows()]

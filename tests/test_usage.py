"""Usage and spend per agent, per branch and per model, in `--json` and `plait threads show`."""

from __future__ import annotations

import json

from plait.state.usage import add_usage, per_branch

PLAN = {
    "subtasks": [
        {"id": "a", "role": "researcher", "description": "one"},
        {"id": "b", "role": "researcher", "description": "two"},
        {"id": "c", "role": "coder", "description": "three"},
    ]
}


def test_branch_numbers_sum_like_the_agent_numbers():
    one = per_branch(
        {"w": {"calls": 1, "input_tokens": 10, "output_tokens": 2, "models": {"m": 1}}}, "a"
    )
    two = per_branch(
        {"w": {"calls": 1, "input_tokens": 5, "output_tokens": 1, "models": {"m": 1}}}, "b"
    )
    again = per_branch(
        {"w": {"calls": 1, "input_tokens": 5, "output_tokens": 1, "models": {"n": 1}}}, "b"
    )
    total = add_usage(add_usage(one, two), again)["w"]
    assert total["calls"] == 3 and total["models"] == {"m": 2, "n": 1}
    assert total["branches"]["a"]["calls"] == 1
    assert total["branches"]["b"] == {"calls": 2, "input_tokens": 10, "output_tokens": 2, "cost": 0}


def test_orchestrator_usage_is_split_by_branch(cli):
    done = cli("run", "orchestrator", "t", "--json", "--thread", "o")
    assert done.exit_code == 0, done.stderr
    usage = json.loads(done.stdout)["usage"]
    # The demo plans s1..s3 with rotating roles: one branch per worker agent.
    workers = {agent: u["branches"] for agent, u in usage.items() if "branches" in u}
    assert sorted(key for branches in workers.values() for key in branches) == ["s1", "s2", "s3"]
    assert all(b["calls"] == 1 for branches in workers.values() for b in branches.values())
    assert "branches" not in usage["planner"] and "branches" not in usage["synthesizer"]

    shown = cli("threads", "show", "o")
    assert shown.exit_code == 0, shown.stderr
    assert "branch" in shown.stdout and "s2" in shown.stdout
    assert "calls per model: demo 5" in shown.stdout

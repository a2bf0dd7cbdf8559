"""The fourteenth pattern in examples/, written with the public kit only: typed options from
its signature, a fan-out whose usage books itself, and a resume that re-runs only what failed."""

import json
from pathlib import Path

from plait.testing import LoopbackServer, status

GRAPH = str(Path(__file__).parent.parent / "examples" / "brainstorm.py") + ":build"
FAIL = status(500, headers={"retry-after-ms": "1"})
PICK = json.dumps({"best": "idea_2", "reason": "shorter"})


def test_typed_options_are_shown_and_checked(cli):
    shown = json.loads(cli("graphs", "show", GRAPH, "--json").stdout)
    options = {o["name"]: o for o in shown["options"]}
    assert options["ideas"]["default"] == 3 and options["style"]["default"] == "safe"
    too_few = cli("run", GRAPH, "t", "--set", "ideas=1")
    assert too_few.exit_code == 2 and "ideas must be at least 2, got 1" in too_few.stderr
    unknown = cli("run", GRAPH, "t", "--set", "style=wild")
    assert unknown.exit_code == 2 and "must be one of bold, safe" in unknown.stderr


def test_a_failed_ideator_is_the_only_one_asked_again_on_resume(cli):
    script = {"ideator": ["idea A", FAIL, FAIL, FAIL, "idea B"], "picker": [PICK]}
    with LoopbackServer(script) as server:
        at = ("--model", "openai:m", "--base-url", server.base_url)
        failed = cli("run", GRAPH, "name it", "--set", "ideas=2", "--thread", "b", *at)
        assert failed.exit_code == 1, failed.stderr
        assert server.count("ideator") == 4 and server.count("picker") == 0
        done = cli("resume", "b", "--json", *at)
    assert done.exit_code == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert server.count("ideator") == 5  # one more: the finished ideator was not asked again
    kept = {"idea A", "idea B"}
    assert outcome["result"].split("\n\n")[0] in kept
    assert outcome["result"].endswith("(idea_2: shorter)")
    usage = outcome["usage"]
    # Booked by the kit, per branch, with nobody returning it by hand.
    assert usage["ideator"]["calls"] == 2 and set(usage["ideator"]["branches"]) == {
        "idea_1",
        "idea_2",
    }
    assert usage["picker"]["calls"] == 1

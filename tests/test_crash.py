"""Real processes, as users run them: the installed `plait` command, killed with SIGKILL in the
middle of a fan-out, then resumed; the loopback server counts every model request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from plait.testing import LoopbackServer, text
from processes import PLAIT, PLAN, env, finished_workers, plait

STUCK = 60.0  # long enough that these workers are still in flight when the process is killed

pytestmark = pytest.mark.slow


def synthesizer_prompt(server: LoopbackServer) -> str:
    (request,) = [r for r in server.requests if r.role == "synthesizer"]
    return request.body["messages"][-1]["content"]


def test_sigkill_mid_fanout_then_resume_calls_only_unfinished_workers(tmp_path):
    db = tmp_path / "crash.db"
    fast = {
        "planner": [PLAN],
        "researcher": ["out-research"],
        "analyst": ["out-analysis"],
        "coder": ["out-code"],
        "synthesizer": ["final answer"],
    }
    with LoopbackServer(fast) as baseline:
        done = subprocess.run(
            plait(
                "run",
                "orchestrator",
                "build it",
                "--json",
                db=tmp_path / "base.db",
                server=baseline,
            ),
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    expected = synthesizer_prompt(baseline)

    script = {
        "planner": [PLAN],
        "researcher": ["out-research"],
        "analyst": [text("never seen", delay=STUCK), "out-analysis"],
        "coder": [text("never seen", delay=STUCK), "out-code"],
        "synthesizer": ["final answer"],
    }
    with LoopbackServer(script) as server:
        proc = subprocess.Popen(
            plait("run", "orchestrator", "build it", "--thread", "crash", db=db, server=server),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(),
        )
        deadline = time.monotonic() + 30
        while finished_workers(db, "crash") < 1:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the researcher's output was never checkpointed"
            time.sleep(0.05)
        assert server.count("analyst") == 1 and server.count("coder") == 1  # in flight
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stderr.close()

        resumed = subprocess.run(
            plait("resume", "crash", "--json", db=db, server=server),
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        outcome = json.loads(resumed.stdout)
        assert outcome["status"] == "done"
        assert outcome["result"] == "final answer"
        # Only the killed workers ran again; the planner and the finished researcher did not.
        assert {role: server.count(role) for role in script} == {
            "planner": 1,
            "researcher": 1,
            "analyst": 2,
            "coder": 2,
            "synthesizer": 1,
        }
        assert synthesizer_prompt(server) == expected


def test_the_installed_command_runs_a_graph_and_refuses_bad_input(tmp_path):
    db = str(tmp_path / "cli.db")
    done = subprocess.run(
        [PLAIT, "run", "review", "Explain the CAP theorem", "--json", "--db", db],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"].startswith("[demo]")
    assert "offline demo model" in done.stderr

    bad = subprocess.run(
        [PLAIT, "run", "nosuchgraph", "task", "--db", db],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown graph 'nosuchgraph'")
    assert "Traceback" not in bad.stderr


def test_ctrl_c_saves_the_thread_and_resume_finishes_it(tmp_path):
    db = tmp_path / "interrupt.db"
    script = {
        "planner": [PLAN],
        "researcher": ["out-research"],
        "analyst": [text("never seen", delay=STUCK), "out-analysis"],
        "coder": ["out-code"],
        "synthesizer": ["final answer"],
    }
    with LoopbackServer(script) as server:
        proc = subprocess.Popen(
            plait("run", "orchestrator", "build it", "--thread", "ctrl-c", db=db, server=server),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env(),
            text=True,
        )
        deadline = time.monotonic() + 30
        while finished_workers(db, "ctrl-c") < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the finished workers were never checkpointed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert "plait resume ctrl-c" in stderr and "Traceback" not in stderr

        listed = subprocess.run(
            [PLAIT, "threads", "--json", "--db", str(db)],
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        )
        assert [t["status"] for t in json.loads(listed.stdout)] == ["interrupted"]

        resumed = subprocess.run(
            plait("resume", "ctrl-c", "--json", db=db, server=server),
            capture_output=True,
            text=True,
            env=env(),
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["result"] == "final answer"
        assert {role: server.count(role) for role in script} == {
            "planner": 1,
            "researcher": 1,
            "analyst": 2,
            "coder": 1,
            "synthesizer": 1,
        }


def test_calls_in_flight_at_a_sigkill_count_against_max_calls_on_resume(tmp_path):
    # The analyst's and coder's requests were sent (and paid for) but their replies died with
    # the process: a resume must count them, so a budget of 4 calls is already spent.
    db = tmp_path / "paid.db"
    script = {
        "planner": [PLAN],
        "researcher": ["out-research"],
        "analyst": [text("never seen", delay=STUCK), "out-analysis"],
        "coder": [text("never seen", delay=STUCK), "out-code"],
        "synthesizer": ["final answer"],
    }
    with LoopbackServer(script) as server:
        proc = subprocess.Popen(
            plait("run", "orchestrator", "build it", "--thread", "paid", db=db, server=server),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env(),
        )
        deadline = time.monotonic() + 30
        while finished_workers(db, "paid") < 1 or server.count() < 4:
            assert proc.poll() is None
            assert time.monotonic() < deadline, "the fan-out never got under way"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

        def resume(limit: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                plait("resume", "paid", "--max-calls", limit, "--json", db=db, server=server),
                capture_output=True,
                text=True,
                env=env(),
                timeout=60,
            )

        stopped = resume("4")
        assert stopped.returncode == 4, stopped.stderr
        assert "calls 4 of 4" in stopped.stderr
        assert server.count() == 4  # nothing more was sent
        finished = resume("7")
        assert finished.returncode == 0, finished.stderr
        assert json.loads(finished.stdout)["result"] == "final answer"
    assert server.count() == 7

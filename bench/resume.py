"""7. Resume waste: model calls repeated after a SIGKILL in the middle of a fan-out.

As ``tests/test_crash.py`` does it: the installed ``plait`` command runs the orchestrator
(8 workers) against a ``LoopbackServer``; some workers answer within a few hundred
milliseconds, the others hang. Once the first worker's output is in the ``writes`` table (plus a
random jitter, so the kills land at different points), the process gets SIGKILL, and ``plait
resume`` finishes the thread with every request answered at once. The ``writes`` table read
after the kill says which workers had finished; a resume-phase request for one of them, or for
the planner, is waste. The ideal is zero.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.core import Row, Sizes, scratch
from bench.model import PART, bench_task, plan_reply, respond
from plait.testing import LoopbackServer, text

WORKERS = 8
STUCK = 30.0  # a hung worker: still in flight when the process is killed
PLAIT = str(Path(sys.executable).with_name("plait"))


class KillScript:
    """Answers the run phase with per-worker delays, the resume phase at once; records both."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phase = "idle"
        self.delays: dict[int, float] = {}
        self.seen: list[dict[str, Any]] = []

    def __call__(self, role: str, body: dict[str, Any]) -> Any:
        texts = [m.get("content") or "" for m in body.get("messages", [])]
        part = PART.search(texts[-1]) if texts else None
        index = (
            int(part.group(1))
            if part and role in ("researcher", "analyst", "coder", "qa_tester")
            else None
        )
        delay = self.delays.get(index, 0.0) if self.phase == "run" and index else 0.0
        with self.lock:
            self.seen.append(
                {
                    "phase": self.phase,
                    "role": role,
                    "part": index,
                    "at": time.monotonic(),
                    "delay": delay,
                }
            )
        if role == "planner":
            return text(plan_reply(WORKERS))
        content, _ = respond(role, texts)
        return text(content, delay=delay)


def _env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PLAIT_"))}
    return {**clean, "COLUMNS": "200"}


def _cli(*args: str, db: Path, url: str) -> list[str]:
    return [PLAIT, *args, "--db", str(db), "--model", "openai:bench", "--base-url", url]


def _finished(db: Path, thread_id: str) -> set[int]:
    """Worker parts whose output is in the ``writes`` table."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute(
                "SELECT type, value FROM writes WHERE thread_id = ? AND channel = 'outputs'",
                (thread_id,),
            ).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return set()
    done = set()
    for kind, value in rows:
        for sid in serde.loads_typed((kind, value)):
            done.add(int(sid.lstrip("s")))
    return done


def _count_outputs(db: Path, thread_id: str) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM writes WHERE thread_id = ? AND channel = 'outputs'",
                (thread_id,),
            ).fetchone()
    except sqlite3.OperationalError:
        return 0
    return count


def _trial(k: int, folder: Path, server: LoopbackServer, script: KillScript) -> dict[str, Any]:
    rng = random.Random(k)
    fast = {i for i in range(1, WORKERS + 1) if rng.random() < 0.5} or {1}
    if len(fast) == WORKERS:
        fast.discard(WORKERS)
    script.delays = {
        i: (rng.uniform(0.0, 0.4) if i in fast else STUCK) for i in range(1, WORKERS + 1)
    }
    script.phase = "run"
    thread, db = f"kill{k}", folder / "resume.db"
    task = bench_task("resume", n=WORKERS, trial=k)
    options = ["--set", f"min_subtasks={WORKERS}", "--set", f"max_subtasks={WORKERS}"]
    proc = subprocess.Popen(
        _cli("run", "orchestrator", task, "--thread", thread, *options, db=db, url=server.base_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    deadline = time.monotonic() + 60
    while _count_outputs(db, thread) < 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"kill {k}: no worker output was checkpointed")
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.25))
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    proc.wait(timeout=10)
    finished = _finished(db, thread)
    with script.lock:
        first = [r for r in script.seen if r["phase"] == "run"]
        script.seen.clear()
    answered = {r["part"] for r in first if r["part"] and r["at"] + r["delay"] < killed_at}

    script.phase = "resume"
    resumed = subprocess.run(
        _cli("resume", thread, "--json", db=db, url=server.base_url),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    if resumed.returncode != 0 or json.loads(resumed.stdout)["status"] != "done":
        raise RuntimeError(f"kill {k}: resume failed: {resumed.stderr.strip()[-300:]}")
    with script.lock:
        again = [r for r in script.seen if r["phase"] == "resume"]
        script.seen.clear()
    parts = [r["part"] for r in again if r["part"]]
    return {
        "finished_at_kill": len(finished),
        "finished_rerun": sum(1 for p in parts if p in finished),
        "planner_rerun": sum(1 for r in again if r["role"] == "planner"),
        "unfinished_called": sum(1 for p in parts if p not in finished),
        "unfinished": WORKERS - len(finished),
        "answered_not_saved": len(answered - finished),
    }


async def measure(sizes: Sizes) -> tuple[list[Row], dict]:
    script = KillScript()
    trials = []
    with scratch() as folder, LoopbackServer(script) as server:
        for k in range(sizes.kills):
            trials.append(_trial(k, folder, server, script))
    total = {key: sum(t[key] for t in trials) for key in trials[0]}
    waste = total["finished_rerun"] + total["planner_rerun"]
    kills = len(trials)
    note = (
        f"{total['finished_at_kill']} finished branches at the kills; "
        f"{total['answered_not_saved']} answered by the server but not saved before the kill"
    )
    return [
        Row(
            f"resume waste over {kills} kills",
            waste,
            0,
            waste / kills,
            "repeated calls",
            "ideal",
            "per kill",
            "0 finished re-run",
            waste == 0,
            {"note": note, **total},
        )
    ], {"trials": trials, "total": total}

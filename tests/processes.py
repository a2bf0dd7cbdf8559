"""Helpers for tests that run the installed `plait` command as a real process against a
loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from plait.testing import LoopbackServer

PLAIT = str(Path(sys.executable).with_name("plait"))
PLAN = json.dumps(
    {
        "subtasks": [
            {"id": "s1", "role": "researcher", "description": "find facts"},
            {"id": "s2", "role": "analyst", "description": "weigh options"},
            {"id": "s3", "role": "coder", "description": "sketch code"},
        ]
    }
)


def env() -> dict[str, str]:
    """This environment without model settings, and a wide terminal."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PLAIT_"))}
    return {**clean, "COLUMNS": "200"}


def plait(*args: str, db: Path, server: LoopbackServer) -> list[str]:
    """The argv of a `plait` command on ``db`` whose model is served by ``server``."""
    return [
        PLAIT,
        *args,
        "--db",
        str(db),
        "--model",
        "openai:test-model",
        "--base-url",
        server.base_url,
    ]


def finished_workers(db: Path, thread_id: str) -> int:
    """How many orchestrator workers of the thread have their output checkpointed."""
    with closing(sqlite3.connect(db, timeout=5)) as conn:
        try:
            ((count,),) = conn.execute(
                "SELECT count(*) FROM writes WHERE thread_id = ? AND channel = 'outputs'",
                (thread_id,),
            ).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return 0
    return count

"""The benchmarks still run: ``python -m bench --quick`` end to end, in a subprocess.

It checks that every measurement reports finite figures, never what they are: timings belong
in ``bench/`` and BENCHMARKS.md, not in assertions.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The eight measurements of the benchmark issue, by their module names in bench/.
MEASUREMENTS = {
    "overhead",
    "fanout",
    "durable",
    "throughput",
    "storage",
    "tokens",
    "resume",
    "startup",
}

pytestmark = pytest.mark.slow


def test_quick_bench_reports_every_measurement_with_finite_numbers(tmp_path):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PLAIT_"))}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert set(report["measurements"]) == MEASUREMENTS
    for name, measured in report["measurements"].items():
        assert measured["rows"], name
        for row in measured["rows"]:
            for key in ("plait", "baseline", "ratio"):
                value = row[key]
                assert isinstance(value, (int, float)) and math.isfinite(value), (name, row)
            assert row["met"] in (True, False, None), (name, row)

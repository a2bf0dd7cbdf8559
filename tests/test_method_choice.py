"""Choosing the structured-output method per model, and notices a run gives once."""

import json

from plait.testing import LoopbackServer, schema_responder


def _config(tmp_path, body: str):
    path = tmp_path / "plait.toml"
    path.write_text(body)
    return str(path)


def test_a_method_pinned_in_a_profile_is_the_only_one_sent(cli, tmp_path):
    with LoopbackServer(schema_responder()) as server:
        config = _config(
            tmp_path,
            f'[models.local]\nmodel = "openai:m"\nbase_url = "{server.base_url}"\n'
            'structured = "function_calling"\n',
        )
        done = cli("run", "consensus", "Tabs or spaces?", "--model", "local", "--config", config)
    assert done.exit_code == 0, done.stderr
    channels = {r.channel for r in server.requests}
    assert channels == {"tools"}  # every voter was asked through a forced tool
    assert server.count() >= 3


def test_a_model_with_no_known_price_under_max_cost_is_noted_once(cli):
    with LoopbackServer(schema_responder()) as server:
        done = cli(
            "run",
            "review",
            "t",
            "--model",
            "openai:local-m",
            "--base-url",
            server.base_url,
            "--max-cost",
            "1",
        )
    assert done.exit_code == 0, done.stderr
    assert server.count() > 1  # several calls, one note
    assert done.stderr.count("no known price for model 'local-m'") == 1


def test_a_profile_price_makes_the_model_known_and_costed(cli, tmp_path):
    with LoopbackServer(schema_responder()) as server:
        config = _config(
            tmp_path,
            f'[models.local]\nmodel = "openai:local-m"\nbase_url = "{server.base_url}"\n'
            "price = [1000.0, 2000.0]\n",
        )
        done = cli(
            "run",
            "review",
            "t",
            "--model",
            "local",
            "--config",
            config,
            "--max-cost",
            "100",
            "--json",
        )
    assert done.exit_code == 0, done.stderr
    assert "no known price" not in done.stderr
    usage = json.loads(done.stdout)["usage"]
    assert sum(agent["cost"] for agent in usage.values()) > 0


def test_the_thread_counts_requests_sent_less_those_refused(cli, db):
    import sqlite3

    with LoopbackServer(schema_responder(refuse_json_schema=True)) as server:
        done = cli(
            "run",
            "review",
            "t",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            "--thread",
            "counted",
        )
    assert done.exit_code == 0, done.stderr
    refused = sum(r.kind == "refused" for r in server.requests)
    assert refused == 1
    with sqlite3.connect(db) as conn:
        (calls,) = conn.execute(
            "SELECT calls FROM plait_threads WHERE thread_id = 'counted'"
        ).fetchone()
    assert calls == server.count() - refused


def test_a_profile_limit_caps_requests_in_flight_to_its_endpoint(cli, tmp_path):
    import threading
    import time

    lock, in_flight, peak = threading.Lock(), [0], [0]
    answer = schema_responder()

    def counting(role, body):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)  # long enough for parallel voters to overlap if let through
        with lock:
            in_flight[0] -= 1
        return answer(role, body)

    with LoopbackServer(counting) as server:
        config = _config(
            tmp_path,
            f'[models.local]\nmodel = "openai:m"\nbase_url = "{server.base_url}"\nlimit = 1\n',
        )
        done = cli(
            "run", "consensus", "t", "--model", "local", "--config", config, "--set", "voters=4"
        )
    assert done.exit_code == 0, done.stderr
    assert server.count() >= 4
    assert peak[0] == 1

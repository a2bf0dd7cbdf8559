"""``plait doctor``: every endpoint the settings name is checked, with the real ChatOpenAI client
against loopback servers, and each fault is one plain line and the right exit code."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading

from plait.testing import LoopbackServer, schema_responder

KEYS = {
    "endpoint",
    "model",
    "roles",
    "reachable",
    "latency_ms",
    "listed",
    "key",
    "key_env",
    "structured",
    "error",
    "warning",
    "ok",
}


def doctor_json(cli, *args: str) -> tuple[int, dict]:
    result = cli("doctor", *args, "--json")
    assert "Traceback" not in result.stderr
    return result.exit_code, json.loads(result.stdout)


def dead_url() -> str:
    """A loopback URL where nothing listens: the port was just free."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


def slow(delay: float):
    """A schema_responder whose every reply takes ``delay`` seconds."""
    respond = schema_responder()

    def answer(role, body):
        reply = respond(role, body)
        return dataclasses.replace(reply, delay=delay) if not isinstance(reply, str) else reply

    return answer


def test_a_good_endpoint_passes_with_json_schema_and_two_requests(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    with LoopbackServer(schema_responder(), models=["m"]) as server:
        url = server.base_url
        result = cli("doctor", "--model", "openai:m", "--base-url", url)
        code, document = doctor_json(cli, "--model", "openai:m", "--base-url", url)
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"m at {url} (default): ok, reachable in ")
    assert line.endswith(" ms, listed, key accepted ($OPENAI_API_KEY), structured: json_schema")
    assert code == 0
    (entry,) = document["endpoints"]
    assert document["ok"] is True
    assert entry["structured"] == "json_schema"
    assert entry["listed"] is True and entry["reachable"] is True and entry["key"] == "accepted"
    assert entry["key_env"] == "OPENAI_API_KEY" and entry["roles"] == ["default"]
    # Per doctor run: one GET /models and one structured call through the json_schema channel.
    assert server.gets == ["/v1/models"] * 2
    assert [r.channel for r in server.requests] == ["json_schema"] * 2
    assert all(r.kind == "text" for r in server.requests)


def test_a_dead_endpoint_fails_with_one_line_naming_the_url(cli):
    url = dead_url()
    result = cli("doctor", "--model", "openai:m", "--base-url", url)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"m at {url} (default): FAILED, cannot reach {url}: connection refused"
    ]
    assert "Traceback" not in result.stderr
    code, document = doctor_json(cli, "--model", "openai:m", "--base-url", url)
    assert code == 1 and document["ok"] is False
    assert document["endpoints"][0]["reachable"] is False


def test_a_rejected_key_fails_names_its_variable_and_never_shows_it(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    with LoopbackServer(schema_responder(), models=["m"], api_key="right") as server:
        result = cli("doctor", "--model", "openai:m", "--base-url", server.base_url)
    assert result.exit_code == 1
    assert "key rejected (HTTP 401); the key comes from $OPENAI_API_KEY" in result.stdout
    assert len(result.stdout.splitlines()) == 1
    assert "wrong" not in result.stdout + result.stderr
    # The GET was refused, so no chat request was sent after it.
    assert server.gets == ["/v1/models"] and server.requests == []


def test_no_key_at_all_is_said_so_when_the_endpoint_wants_one(cli):
    with LoopbackServer(schema_responder(), models=["m"], api_key="right") as server:
        code, document = doctor_json(cli, "--model", "openai:m", "--base-url", server.base_url)
    (entry,) = document["endpoints"]
    assert code == 1 and entry["key"] == "rejected" and entry["key_env"] is None
    assert entry["error"].startswith("key rejected (HTTP 401); no key is set")


def test_a_server_refusing_json_schema_falls_back_to_function_calling(cli):
    with LoopbackServer(schema_responder(refuse_json_schema=True), models=["m"]) as server:
        code, document = doctor_json(cli, "--model", "openai:m", "--base-url", server.base_url)
    assert code == 0
    (entry,) = document["endpoints"]
    assert entry["structured"] == "function_calling" and entry["key"] == "not needed"
    assert [r.channel for r in server.requests] == ["json_schema", "tools"]
    assert [r.kind for r in server.requests] == ["refused", "tool_call"]


def test_the_demo_model_passes_offline(cli):
    result = cli("doctor")
    assert result.exit_code == 0
    assert result.stdout == "demo (default): ok, offline demo model, structured: function_calling\n"
    assert "demo model" in result.stderr  # the notice that no model is configured


def test_json_document_shape_and_a_pool_checked_member_by_member(cli, tmp_path):
    with (
        LoopbackServer(schema_responder(), models=["m"]) as one,
        LoopbackServer(schema_responder(), models=["m"]) as two,
    ):
        config = tmp_path / "plait.toml"
        config.write_text(
            "[pools.gpus]\nmembers = [\n"
            f'  {{ model = "openai:m", base_url = "{one.base_url}", name = "gpu1" }},\n'
            f'  {{ model = "openai:m", base_url = "{two.base_url}", name = "gpu2" }},\n]\n'
        )
        urls = one.base_url, two.base_url
        args = ("--config", str(config), "--model", "pool:gpus", "--fallback-model", "demo")
        code, document = doctor_json(cli, *args)
        text = cli("doctor", *args)
    assert code == 0 and text.exit_code == 0
    assert set(document) == {"ok", "endpoints"} and document["ok"] is True
    assert [set(entry) for entry in document["endpoints"]] == [KEYS] * 3
    by_model = {entry["model"]: entry for entry in document["endpoints"]}
    assert set(by_model) == {"pool:gpus (gpu1)", "pool:gpus (gpu2)", "demo"}
    assert by_model["pool:gpus (gpu1)"]["endpoint"] == f"m at {urls[0]}"
    assert by_model["pool:gpus (gpu2)"]["roles"] == ["default"]
    assert by_model["demo"]["roles"] == ["fallback"]
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and sum(line.startswith("m at ") for line in lines) == 2
    assert one.count() == two.count() == 2  # one structured call per member per run


def test_one_endpoint_named_for_several_roles_is_checked_once(cli):
    with LoopbackServer(schema_responder(), models=["m"]) as server:
        args = ("--model", "openai:m", "--base-url", server.base_url)
        code, document = doctor_json(cli, *args, "--model-for", "planner=openai:m")
    assert code == 0
    assert [entry["roles"] for entry in document["endpoints"]] == [["default", "planner"]]
    assert server.count() == 1


def test_a_model_missing_from_models_is_a_warning_and_no_models_route_is_fine(cli):
    with LoopbackServer(schema_responder(), models=["other"]) as server:
        result = cli("doctor", "--model", "openai:m", "--base-url", server.base_url)
    assert result.exit_code == 0
    assert ": warning, " in result.stdout and "not listed by /models" in result.stdout
    server = LoopbackServer(schema_responder()).start()  # models=None: GET /v1/models is 404
    try:
        code, document = doctor_json(cli, "--model", "openai:m", "--base-url", server.base_url)
        text = cli("doctor", "--model", "openai:m", "--base-url", server.base_url)
    finally:
        server.stop()
    assert code == 0 and document["endpoints"][0]["listed"] is None
    assert "no /models (HTTP 404)" in text.stdout and ": ok, " in text.stdout


def test_endpoints_are_checked_concurrently(cli, tmp_path):
    # Each server answers only once the other has a request too: checked one after the
    # other, the first would wait out the barrier, fail, and fail the check.
    both_asked = threading.Barrier(2, timeout=5)
    answer = schema_responder()

    def meeting(role, body):
        both_asked.wait()
        return answer(role, body)

    with (
        LoopbackServer(meeting, models=["m"]) as first,
        LoopbackServer(meeting, models=["m"]) as second,
    ):
        config = tmp_path / "plait.toml"
        config.write_text(f'[models.second]\nmodel = "openai:m"\nbase_url = "{second.base_url}"\n')
        result = cli(
            "doctor",
            *("--config", str(config), "--model", "openai:m", "--base-url", first.base_url),
            *("--model-for", "planner=second"),
        )
    assert result.exit_code == 0, result.stdout
    assert len(result.stdout.splitlines()) == 2
    assert first.count() == second.count() == 1


def test_a_slow_endpoint_times_out_in_one_line(cli):
    with LoopbackServer(slow(2.0), models=["m"]) as server:
        url = server.base_url
        result = cli("doctor", "--model", "openai:m", "--base-url", url, "--timeout", "0.3")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"m at {url} (default): FAILED, {url} did not answer within 0.3 s (--timeout)"
    ]
    assert server.count() == 1  # no retry


def test_a_bad_config_file_is_exit_2_in_one_line(cli, tmp_path):
    config = tmp_path / "plait.toml"
    config.write_text('modle = "openai:m"\n')
    result = cli("doctor", "--config", str(config))
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "unknown top-level key 'modle'" in line


def test_doctor_as_a_real_process(tmp_path):
    from processes import env

    with LoopbackServer(schema_responder(), models=["m"]) as server:
        url = server.base_url
        done = subprocess.run(
            [sys.executable, "-m", "plait", "doctor", "--model", "openai:m", "--base-url", url],
            capture_output=True,
            text=True,
            env=env(),
            cwd=tmp_path,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"m at {url} (default): ok, reachable in ")
    assert line.endswith("listed, key not needed, structured: json_schema")
    assert "1 endpoint(s) checked: all passed" in done.stderr
    assert server.gets == ["/v1/models"] and server.count() == 1


def test_loopback_server_lists_models_and_checks_the_key():
    import httpx

    with LoopbackServer(schema_responder(), models=["a", "b"], api_key="right") as server:
        url = server.base_url
        good = httpx.get(f"{url}/models", headers={"Authorization": "Bearer right"})
        bad = httpx.get(f"{url}/models", headers={"Authorization": "Bearer wrong"})
        post = httpx.post(f"{url}/chat/completions", json={"model": "a", "messages": []})
    assert [item["id"] for item in good.json()["data"]] == ["a", "b"]
    assert good.json()["object"] == "list"
    assert bad.status_code == post.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_api_key" and "wrong" not in bad.text
    assert server.gets == ["/v1/models"] * 2
    assert [r.kind for r in server.requests] == ["unauthorized"]
    unlisted = LoopbackServer(schema_responder()).start()  # models=None keeps the old 404
    try:
        assert httpx.get(f"{unlisted.base_url}/models").status_code == 404
    finally:
        unlisted.stop()
    assert unlisted.violations == ["no route for GET /v1/models"]

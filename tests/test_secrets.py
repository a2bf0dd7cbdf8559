"""Keys are never stored or printed: credentialed base URLs are refused wherever they enter,
and what an endpoint echoes back is redacted before the thread index or the terminal sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plait.errors import ExitCode, ModelSpecError
from plait.secrets import check_base_url, mask_url, redact, scrub
from plait.testing import LoopbackServer, status
from test_bad_input import assert_intact, assert_one_line_error, saved_thread  # noqa: F401

KEY = "sk-test-SECRET-1234567890abcdef"
# Everything a leak could look like: the key, its distinctive middle, and the test's other
# credentials.
SECRETS = (KEY, "SECRET-1234567890", "tok@", "sk-x", "key=abc", "abc123def456ghi789jkl012mno")
ECHOED = {
    "error": {
        "message": f"Incorrect API key provided: Bearer {KEY}",
        "type": "invalid_request_error",
    }
}
HEALTHY = {
    "researcher": ["facts"],
    "outliner": ["o"],
    "writer": ["w"],
    "reviewer": ['{"approved": true, "feedback": ""}'],
}


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text)


def assert_db_clean(db: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        path = Path(db + suffix)
        if path.exists():
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, (secret, path.name)


# --- end to end: an endpoint that echoes the key --------------------------------------------


@pytest.mark.parametrize("code", [401, 404])
def test_an_echoed_key_is_never_stored_or_printed(cli, db, saved_thread, key, code):  # noqa: F811
    outputs = []

    def run(*args: str):
        result = cli(*args)
        outputs.extend((result.stdout, result.stderr))
        return result

    with LoopbackServer({"researcher": [status(code, body=ECHOED)] * 2}) as server:
        url = server.base_url
        failed = run(
            "run", "review", "t", "--model", "openai:m", "--base-url", url, "--thread", "f"
        )
        as_json = run("run", "review", "t", "-m", "openai:m", "--base-url", url, "--json")
    # A 401 is reported without its body; a 404 quotes what the endpoint said, redacted.
    echoed = ("Bearer ***",) if code == 404 else ()
    assert_one_line_error(failed, ExitCode.FAILED, f"HTTP {code}", *echoed)
    assert as_json.exit_code == ExitCode.FAILED
    document = json.loads(as_json.stdout)
    assert document["status"] == "failed" and all(e in document["error"] for e in echoed)

    shown = json.loads(run("threads", "show", "f", "--json").stdout)
    assert shown["status"] == "failed" and all(e in shown["error"] for e in echoed)
    for args in (
        ("threads",),
        ("threads", "--json"),
        ("threads", "show", "f"),
        ("threads", "log", "f"),
    ):
        assert run(*args).exit_code == 0

    with LoopbackServer(HEALTHY) as healthy:
        resumed = run("resume", "f", "--base-url", healthy.base_url, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"] == "w"
    with LoopbackServer(HEALTHY) as healthy:
        fresh = run("run", "review", "t2", "-m", "openai:m", "--base-url", healthy.base_url)
    assert fresh.exit_code == 0 and fresh.stdout.strip() == "w", fresh.stderr

    assert_no_secret(*outputs)
    assert_db_clean(db)
    assert_intact(cli, db, saved_thread, threads=4)


def test_doctor_never_prints_an_echoed_key(cli, key):
    def echo(role, body):
        return status(500, body=ECHOED)

    with LoopbackServer(echo, models=["m"]) as server:
        for extra in ([], ["--json"]):
            result = cli("doctor", "--model", "openai:m", "--base-url", server.base_url, *extra)
            assert result.exit_code == ExitCode.FAILED, result.stderr
            assert "Bearer ***" in result.stdout
            assert_no_secret(result.stdout, result.stderr)


# --- credentialed or malformed base URLs are refused up front ---------------------------------

BAD_URLS = {
    "user": "http://tok@127.0.0.1:1/v1",
    "user and password": "http://tok:sk-x@127.0.0.1:1/v1",
    "api_key": "http://127.0.0.1:1/v1?api_key=sk-x",
    "key": "http://127.0.0.1:1/v1?key=abc",
    "token": "http://127.0.0.1:1/v1?token=abc",
    "access_token": "http://127.0.0.1:1/v1?x=1&access_token=abc",
    "sig": "http://127.0.0.1:1/v1?sig=abc",
    "sk path": "http://127.0.0.1:1/v1/sk-x1234567890",
    "random path": "http://127.0.0.1:1/abc123def456ghi789jkl012mno/v1",
}
NOT_URLS = {
    "words": "not a url",
    "no scheme": "127.0.0.1:8000/v1",
    "no host": "http:///v1",
    "ftp": "ftp://127.0.0.1/v1",
    "bad port": "http://127.0.0.1:port/v1",
    "empty": "",
}


@pytest.mark.parametrize("case", list(BAD_URLS))
def test_check_base_url_refuses_credentials(case):
    with pytest.raises(ModelSpecError) as raised:
        check_base_url(BAD_URLS[case])
    message = str(raised.value)
    assert "OPENAI_API_KEY" in message and "\n" not in message
    assert_no_secret(message)


@pytest.mark.parametrize("case", list(NOT_URLS))
def test_check_base_url_refuses_what_is_not_a_url(case):
    with pytest.raises(ModelSpecError, match="must be an http:// or https:// URL"):
        check_base_url(NOT_URLS[case])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "https://api.openai.com/v1",
        "http://localhost:11434",
        "https://x.openai.azure.com/openai/deployments/my-gpt4-deployment-2024?api-version=2024-02-01",
        "http://gpu1:8000/v1/",
    ],
)
def test_check_base_url_accepts_plain_endpoints(url):
    assert check_base_url(url) == url


@pytest.mark.parametrize("case", list(BAD_URLS) + list(NOT_URLS))
def test_run_refuses_a_bad_base_url(cli, db, saved_thread, key, case):  # noqa: F811
    url = {**BAD_URLS, **NOT_URLS}[case]
    result = cli("run", "review", "t", "--model", "openai:m", "--base-url", url)
    assert_one_line_error(result, ExitCode.USAGE, "--base-url")
    assert_no_secret(result.stdout, result.stderr)
    assert_intact(cli, db, saved_thread)
    assert_db_clean(db)


def test_resume_refuses_a_credentialed_base_url(cli, db, saved_thread, key):  # noqa: F811
    with LoopbackServer({"researcher": [status(404)]}) as server:
        url = server.base_url
        failed = cli("run", "review", "t", "-m", "openai:m", "--base-url", url, "--thread", "f")
    assert failed.exit_code == ExitCode.FAILED
    result = cli("resume", "f", "--base-url", BAD_URLS["api_key"])
    assert_one_line_error(result, ExitCode.USAGE, "--base-url", "OPENAI_API_KEY")
    assert_no_secret(result.stdout, result.stderr)
    assert json.loads(cli("threads", "show", "f", "--json").stdout)["status"] == "failed"
    assert_intact(cli, db, saved_thread, threads=2)
    assert_db_clean(db)


def test_doctor_refuses_a_credentialed_base_url(cli, key):
    result = cli("doctor", "--model", "openai:m", "--base-url", BAD_URLS["user"])
    assert_one_line_error(result, ExitCode.USAGE, "--base-url", "OPENAI_API_KEY")
    assert_no_secret(result.stdout, result.stderr)


@pytest.mark.parametrize("case", ["user", "key", "sk path", "words"])
def test_a_profile_or_pool_member_base_url_is_refused(cli, db, tmp_path, saved_thread, case):  # noqa: F811
    url = {**BAD_URLS, **NOT_URLS}[case]
    profile = tmp_path / "profile.toml"
    profile.write_text(f'[models.local]\nmodel = "openai:m"\nbase_url = "{url}"\n')
    member = tmp_path / "member.toml"
    member.write_text(f'[pools.gpus]\nmembers = [{{ model = "openai:m", base_url = "{url}" }}]\n')
    for config, phrase in ((profile, "[models.local] base_url"), (member, "member 0 base_url")):
        result = cli("run", "review", "t", "--config", str(config))
        assert_one_line_error(result, ExitCode.USAGE, f"{config.name}:", phrase)
        assert_no_secret(result.stderr)
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps({"members": [{"model": "openai:m", "base_url": url}]}))
    result = cli("run", "review", "t", "--model", f"pool:{pool}")
    assert_one_line_error(result, ExitCode.USAGE, "member 0 base_url")
    assert_no_secret(result.stderr)
    assert_intact(cli, db, saved_thread)


# --- redact ----------------------------------------------------------------------------------


def test_redact_hides_the_configured_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-plain-value-42")
    monkeypatch.setenv("MY_VLLM_KEY", "vllm-plain-value-7")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to hide: it would eat ordinary words
    text = f"got {KEY} and ghp-plain-value-42 and vllm-plain-value-7 and abc"
    hidden = redact(text, names=["MY_VLLM_KEY"])
    assert hidden == "got *** and *** and *** and abc"


def test_check_models_remembers_api_key_env_names_and_checks_profile_urls(monkeypatch):
    from plait.settings import RunSettings

    monkeypatch.setenv("LOCAL_SERVER_PASS", "local-pass-value-99")
    profile = {"model": "openai:m", "base_url": "http://127.0.0.1:1/v1"}
    RunSettings(models={"local": {**profile, "api_key_env": "LOCAL_SERVER_PASS"}}).check_models()
    assert redact("echoed local-pass-value-99") == "echoed ***"
    bad = RunSettings(models={"local": {**profile, "base_url": BAD_URLS["key"]}})
    with pytest.raises(
        ModelSpecError,
        match=r"profile 'local' base_url must not carry credentials \(a key in its query",
    ):
        bad.check_models()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Incorrect API key provided: Bearer abc.def-123",
            "Incorrect API key provided: Bearer ***",
        ),
        ("authorization: bearer abcdefghijklmnopqrstuvwxyz", "authorization: bearer ***"),
        ("key sk-proj-abcdef123456 leaked", "key *** leaked"),
        ("stripe sk_live_abcdef123456", "stripe ***"),
        ("GET http://h/v1?api_key=s3cret&x=1", "GET http://h/v1?api_key=***&x=1"),
        ("GET http://h/v1?key=abc&api-key=def", "GET http://h/v1?key=***&api-key=***"),
        ("http://h/v1?token=abc&sig=ghi", "http://h/v1?token=***&sig=***"),
        ("said api_key=abc and access_token=def", "said api_key=*** and access_token=***"),
        ("--set takes key=value; token=word", "--set takes key=value; token=word"),
        ("cannot reach http://user:pw@h:8000/v1", "cannot reach http://***@h:8000/v1"),
        ("cannot reach https://tok@h/v1", "cannot reach https://***@h/v1"),
        # ordinary words stay
        (
            "Bearer tokens expire; monkey=1; a task-list",
            "Bearer tokens expire; monkey=1; a task-list",
        ),
        ("it returned 'see [note] here'", "it returned 'see [note] here'"),
    ],
)
def test_redact_forms(text, expected):
    assert redact(text) == expected


def test_scrub_keeps_json_valid():
    data = {
        "error": 'said "Bearer sk-abcdefgh12345678\\" and \\n',
        "n": [1, "http://h?key=v"],
        "ok": None,
    }
    hidden = scrub(data)
    assert json.loads(json.dumps(hidden)) == hidden
    assert hidden["n"] == [1, "http://h?key=***"] and "sk-abcdefgh" not in hidden["error"]


def test_mask_url_for_display():
    url = "http://user:pw@gpu1:8000/v1/sk-x1234567890?api-version=1"
    assert mask_url(url) == "http://***@gpu1:8000/v1/***?api-version=***"

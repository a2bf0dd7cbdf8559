"""plait.toml: where it is found, precedence (flag > file > env > default) as `plait config
show --json` reports it, that `plait run` obeys it, and every bad file refused in one line
(exit 2) before any thread is touched. No key is ever printed."""

from __future__ import annotations

import json
import pathlib
from pathlib import Path

import pytest
import typer

from plait.config import STRATEGIES, STRUCTURED, effective
from plait.errors import ExitCode

FULL = """
model = "local"
fallbacks = ["big"]
structured = "auto"

[models.local]
model = "demo"
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "VLLM_API_KEY"
structured = "json_schema"
limit = 8
price = [0.0, 0.0]
args = { temperature = 0.2 }

[models.big]
model = "demo"

[roles]
planner = "big"
writer = "local"

[pools.gpus]
strategy = "least_loaded"
members = [ { model = "local", limit = 4, capabilities = ["coder"], name = "gpu1" } ]

[prices]
"my-model" = [0.2, 0.8]

[budget]
max_tokens = 100000
max_cost = 1.0
max_calls = 200

[run]
timeout = 60
retries = 2
max_concurrency = 16
role_timeouts = { planner = 30 }
"""


@pytest.fixture(autouse=True)
def no_config_around(tmp_path, monkeypatch):
    """No plait.toml from the machine: an empty working dir and a private user config dir."""
    monkeypatch.delenv("PLAIT_CONFIG", raising=False)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    user_dir = tmp_path / "user-config"
    monkeypatch.setattr(typer, "get_app_dir", lambda name, **kwargs: str(user_dir / name))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def show(cli, *args: str) -> dict:
    result = cli("config", "show", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["settings"]


def threads(cli) -> list:
    listed = cli("threads", "--json")
    assert listed.exit_code == 0, listed.stderr
    return json.loads(listed.stdout)


# --- precedence --------------------------------------------------------------------------


def test_model_flag_beats_file_beats_env_beats_default(cli, tmp_path, monkeypatch):
    assert show(cli)["model"] == {"value": "demo", "source": "default"}
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert show(cli)["model"] == {"value": "openai:gpt-4o-mini", "source": "env"}
    monkeypatch.setenv("PLAIT_MODEL", "anthropic:claude-x")
    assert show(cli)["model"] == {"value": "anthropic:claude-x", "source": "env"}
    config = write(tmp_path / "c.toml", 'model = "openai:from-file"\n')
    assert show(cli, "--config", config)["model"] == {
        "value": "openai:from-file",
        "source": f"file:{config}",
    }
    assert show(cli, "--config", config, "--model", "demo")["model"] == {
        "value": "demo",
        "source": "flag",
    }


def test_budgets_flag_beats_file_beats_default(cli, tmp_path):
    config = write(tmp_path / "c.toml", "[budget]\nmax_calls = 5\nmax_cost = 0.5\n")
    assert show(cli)["max_calls"] == {"value": None, "source": "default"}
    from_file = show(cli, "--config", config)
    assert from_file["max_calls"] == {"value": 5, "source": f"file:{config}"}
    assert from_file["max_cost"] == {"value": 0.5, "source": f"file:{config}"}
    flagged = show(cli, "--config", config, "--max-calls", "7")
    assert flagged["max_calls"] == {"value": 7, "source": "flag"}
    assert flagged["max_cost"]["source"] == f"file:{config}"


def test_run_options_and_roles_merge_key_by_key(cli, tmp_path):
    config = write(tmp_path / "c.toml", FULL)
    assert show(cli)["options"]["timeout"] == {"value": 120.0, "source": "default"}
    settings = show(cli, "--config", config, "--set", "timeout=5", "--model-for", "planner=demo")
    source = f"file:{config}"
    assert settings["options"]["timeout"] == {"value": 5.0, "source": "flag"}
    assert settings["options"]["retries"] == {"value": 2, "source": source}
    assert settings["options"]["role_timeouts"] == {"value": ["planner=30"], "source": source}
    assert settings["model_for"] == {
        "planner": {"value": "demo", "source": "flag"},
        "writer": {"value": "local", "source": source},
    }
    assert settings["structured"] == {"value": "auto", "source": source}
    assert settings["fallbacks"] == {"value": ["big"], "source": source}


def test_the_file_becomes_run_settings(tmp_path):
    path = Path(write(tmp_path / "c.toml", FULL))
    settings, sources = effective({}, path)
    assert settings.model == "local" and settings.fallbacks == ["big"]
    assert settings.models == {
        "local": {
            "model": "demo",
            "base_url": "http://127.0.0.1:8000/v1",
            "api_key_env": "VLLM_API_KEY",
            "structured": "json_schema",
            "limit": 8,
            "price": [0.0, 0.0],
            "args": {"temperature": 0.2},
        },
        "big": {"model": "demo"},  # unset keys are left out
    }
    assert settings.pools == {
        "gpus": {
            "strategy": "least_loaded",
            "members": [{"model": "local", "limit": 4, "capabilities": ["coder"], "name": "gpu1"}],
        }
    }
    assert settings.prices == {"my-model": [0.2, 0.8]}
    assert (settings.max_tokens, settings.max_cost, settings.max_calls) == (100000, 1.0, 200)
    assert settings.options == {
        "timeout": 60.0,
        "retries": 2,
        "max_concurrency": 16,
        "role_timeouts": ["planner=30"],
    }
    assert settings.context().timeout_for == {"planner": 30.0}
    assert sources["models.local"] == sources["pools.gpus"] == f"file:{path}"


def test_choices_match_the_model_layer():
    from plait.models.methods import CHOICES
    from plait.models.pool import STRATEGIES as POOL_STRATEGIES

    assert STRUCTURED == CHOICES
    assert STRATEGIES == POOL_STRATEGIES


# --- discovery ---------------------------------------------------------------------------


def test_discovery_order(cli, tmp_path, monkeypatch, no_config_around):
    user = write(Path(typer.get_app_dir("plait")) / "plait.toml", 'model = "openai:user"\n')
    here = write(no_config_around / "plait.toml", 'model = "openai:here"\n')
    env = write(tmp_path / "env.toml", 'model = "openai:env"\n')
    flag = write(tmp_path / "flag.toml", 'model = "openai:flag"\n')
    monkeypatch.setenv("PLAIT_CONFIG", env)
    assert show(cli, "--config", flag)["model"]["value"] == "openai:flag"
    assert show(cli)["model"]["value"] == "openai:env"
    monkeypatch.delenv("PLAIT_CONFIG")
    assert show(cli)["model"] == {"value": "openai:here", "source": "file:plait.toml"}
    Path(here).unlink()
    assert show(cli)["model"] == {"value": "openai:user", "source": f"file:{user}"}
    Path(user).unlink()
    assert show(cli)["model"]["source"] == "default"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_named_config_that_does_not_exist_is_an_error(cli, monkeypatch, how):
    args = ["config", "show"]
    if how == "flag":
        args += ["--config", "nowhere.toml"]
    else:
        monkeypatch.setenv("PLAIT_CONFIG", "nowhere.toml")
    result = cli(*args)
    assert_one_line_error(result, "'nowhere.toml'", "does not exist")


# --- plait run and resume obey it --------------------------------------------------------


def test_run_obeys_the_files_budget_and_run_options(cli, tmp_path):
    config = write(
        tmp_path / "c.toml", 'model = "demo"\n[budget]\nmax_calls = 1\n[run]\nretries = 0\n'
    )
    stopped = cli("run", "review", "x", "--config", config, "--json", "--thread", "capped")
    assert stopped.exit_code == ExitCode.BUDGET, stopped.stderr
    assert json.loads(stopped.stdout)["status"] == "budget"
    stored = json.loads(cli("threads", "show", "capped", "--json").stdout)["settings"]
    assert stored["max_calls"] == 1 and stored["options"] == {"retries": 0}

    done = cli("run", "review", "x", "--config", config, "--max-calls", "100", "--json")
    assert done.exit_code == 0, done.stderr  # the flag beats the file


def test_resume_keeps_the_threads_settings_but_may_name_the_files_profiles(cli, tmp_path):
    stopped = cli("run", "review", "x", "--max-calls", "1", "--thread", "t1", "--json")
    assert stopped.exit_code == ExitCode.BUDGET
    generous = write(
        tmp_path / "c.toml", '[budget]\nmax_calls = 1000\n[models.offline]\nmodel = "demo"\n'
    )
    again = cli("resume", "t1", "--config", generous, "--json")
    assert again.exit_code == ExitCode.BUDGET, again.stderr  # the stored budget wins

    done = cli("resume", "t1", "--config", generous, "--model", "offline", "--max-calls", "100")
    assert done.exit_code == 0, done.stderr
    stored = json.loads(cli("threads", "show", "t1", "--json").stdout)["settings"]
    assert stored["model"] == "offline" and stored["models"] == {"offline": {"model": "demo"}}


# --- bad files ---------------------------------------------------------------------------


def assert_one_line_error(result, *phrases: str, secret: str | None = None) -> str:
    assert result.exit_code == ExitCode.USAGE, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    if secret:
        assert secret not in result.stderr + result.stdout
    return lines[0]


BAD = {
    "malformed toml": ('model = "demo"\nfallbacks = [\n', ["plait.toml:3:1:"]),
    "bad value toml": ('model = "demo"\nstructured = auto\n', ["plait.toml:2:14:", "Invalid"]),
    "unknown profile key": (
        '[models.local]\nmodel = "demo"\ntemprature = 0.2\n',
        ["plait.toml:3:", "[models.local] unknown key 'temprature'", "valid: model, base_url"],
    ),
    "unknown top-level key": ('modle = "demo"\n', ["plait.toml:1:", "'modle'", "fallbacks"]),
    "unknown budget key": (
        "\n[budget]\nmax_call = 3\n",
        ["plait.toml:3:", "[budget]", "max_calls"],
    ),
    "unknown structured method": (
        'structured = "xml"\n',
        ["unknown structured method 'xml'", "auto, json_schema, function_calling"],
    ),
    "unknown structured method in a profile": (
        '[models.a]\nmodel = "demo"\nstructured = "xml"\n',
        ["plait.toml:3:", "[models.a]", "'xml'", "json_mode, prompt"],
    ),
    "unknown pool strategy": (
        '[pools.p]\nstrategy = "fastest"\nmembers = [{ model = "demo" }]\n',
        ["[pools.p] unknown pool strategy 'fastest'", "round_robin, least_loaded"],
    ),
    "pool member without model": (
        '[pools.gpus]\nmembers = [{ model = "demo" }, { limit = 2 }]\n',
        ["plait.toml:2:", "[pools.gpus] member 1", "'model'"],
    ),
    "profile name with a colon": ('[models."openai:x"]\nmodel = "demo"\n', ["'openai:x'", "':'"]),
    "bad run option": ("[run]\ntimeout = -5\n", ["plait.toml:2:", "[run]", "timeout"]),
    "unknown run option": ("[run]\nspeed = 9\n", ["[run] unknown key 'speed'", "retries"]),
    "bad budget": ("[budget]\nmax_calls = 0\n", ["[budget] max_calls", "greater than"]),
}
SECRETS = {
    "api_key in a profile": '[models.local]\nmodel = "demo"\napi_key = "sk-secret123"\n',
    "token in a profile": '[models.local]\nmodel = "demo"\ntoken = "sk-secret123"\n',
    "password in args": '[models.local]\nmodel = "demo"\nargs = { password = "sk-secret123" }\n',
    "key in a pool member": '[pools.p]\nmembers = [{ model = "demo", key = "sk-secret123" }]\n',
}
KEY_ENV = {
    "a key as api_key_env": '[models.local]\nmodel = "demo"\napi_key_env = "sk-secret123"\n',
    "not a variable name": '[models.local]\nmodel = "demo"\napi_key_env = "abc-secret123"\n',
}


@pytest.fixture
def keeper(cli) -> list:
    done = cli("run", "review", "keep me", "--thread", "keeper", "--json")
    assert done.exit_code == 0, done.stderr
    return threads(cli)


def refused(cli, keeper, text: str, *phrases: str, secret: str | None = None) -> None:
    Path("plait.toml").write_text(text, encoding="utf-8")  # found in the working dir
    for command in (["run", "review", "t"], ["resume", "keeper"], ["config", "show"]):
        assert_one_line_error(cli(*command), *phrases, secret=secret)
    assert threads(cli) == keeper


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_is_one_line_and_exit_2(cli, keeper, case):
    text, phrases = BAD[case]
    refused(cli, keeper, text, *phrases)


@pytest.mark.parametrize("case", list(SECRETS))
def test_a_key_in_the_file_is_refused_unseen(cli, keeper, case):
    refused(cli, keeper, SECRETS[case], "environment variable", "api_key_env", secret="secret123")


@pytest.mark.parametrize("case", list(KEY_ENV))
def test_api_key_env_must_name_a_variable(cli, keeper, case):
    refused(cli, keeper, KEY_ENV[case], "api_key_env", "NAME", secret="secret123")


def test_an_unreadable_config_says_why(cli, keeper, tmp_path, monkeypatch):
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    result = cli("run", "review", "t", "--config", str(folder))
    assert_one_line_error(result, str(folder), "directory")

    denied = write(tmp_path / "denied.toml", 'model = "demo"\n')

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "read_bytes", refuse)
    result = cli("run", "review", "t", "--config", denied)
    monkeypatch.undo()
    assert_one_line_error(result, denied, "Permission denied")
    assert threads(cli) == keeper


# --- secrets never shown -----------------------------------------------------------------


def test_show_masks_keys_and_url_credentials(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "sk-secret123")
    config = write(tmp_path / "c.toml", FULL)
    url = "http://user:sk-secret123@gpu1:8000/v1?api-key=sk-secret123"
    for extra in ([], ["--json"]):
        result = cli("config", "show", "--config", config, "--base-url", url, *extra)
        assert result.exit_code == 0, result.stderr
        assert "sk-secret123" not in result.stdout + result.stderr
        assert "VLLM_API_KEY" in result.stdout
    document = json.loads(result.stdout)
    assert document["keys"] == {"OPENAI_API_KEY": "not set", "VLLM_API_KEY": "set"}
    assert document["settings"]["base_url"]["value"] == "http://***@gpu1:8000/v1?api-key=***"
    assert document["settings"]["models"]["local"]["value"]["api_key_env"] == "VLLM_API_KEY"
    text = cli("config", "show", "--config", config).stdout
    assert "VLLM_API_KEY" in text and " set " in text


def test_the_readme_example_file_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.partition("\n## Configuration file\n")[2].partition("\n## ")[0]
    example = section.partition("```toml\n")[2].partition("```")[0]
    settings, _ = effective({}, Path(write(tmp_path / "plait.toml", example)))
    assert settings.model == "local" and settings.pools["gpus"]["strategy"] == "least_loaded"
    assert settings.options == {"timeout": 60.0, "role_timeouts": ["planner=30"]}

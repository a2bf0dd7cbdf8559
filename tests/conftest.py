"""Test isolation: every test gets its own data directory and no model credentials, and no
test can open a socket to anything but this machine's loopback."""

from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect


def _loopback_only(sock: socket.socket, address) -> None:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"tests may not reach the network (tried {host})")
    _real_connect(sock, address)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private data dir and database; no keys or model settings leak in from the machine."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "PLAIT_MODEL",
        "PLAIT_DB",
        "PLAIT_DEBUG",
        "PLAIT_CONFIG",
        "PLAIT_PRICES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no user plait.toml
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    from plait.models.spec import clear_model_cache

    clear_model_cache()  # model clients are cached per event loop; tests change the env
    return tmp_path


@pytest.fixture
def db(tmp_path) -> str:
    """A database path of the test's own."""
    return str(tmp_path / "plait.db")


@pytest.fixture
def cli(db):
    """Invoke the real CLI in-process, as a user would type it, against the test's database.

    Returns a function ``cli(*args, input=None) -> Result`` with ``exit_code``, ``stdout`` and
    ``stderr`` kept apart (results on stdout, progress and errors on stderr).
    """
    from typer.testing import CliRunner

    from plait.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, with_db: bool = True):
        extra = ["--db", db] if with_db and args and _takes_db(args) else []
        return runner.invoke(app, [*args, *extra], input=input, env={"COLUMNS": "200"})

    return invoke


def _takes_db(args: tuple[str, ...]) -> bool:
    # `plait graphs ...` has no --db; every command that touches threads does.
    return args[0] in ("run", "resume") or (args[0] == "threads" and "--db" not in args)

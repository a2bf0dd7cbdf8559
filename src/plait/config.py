"""``plait.toml``: where it is found, what it may say, and how it combines with flags.

Precedence, highest first: a flag on the command line, the file, the environment
(``PLAIT_MODEL``, ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``), the built-in defaults. The file
never holds a secret: a profile names the environment variable its key is in.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from plait.errors import OptionError, UsageError
from plait.graphs.registry import RUN_OPTIONS
from plait.secrets import check_base_url
from plait.settings import RunSettings

FILE_NAME = "plait.toml"
# Copies of plait.models.methods.CHOICES and plait.models.pool.STRATEGIES (a test keeps them
# equal): importing those modules would load LangChain just to check a config file.
StructuredMethod = Literal["auto", "json_schema", "function_calling", "json_mode", "prompt"]
Strategy = Literal["round_robin", "least_loaded", "capability"]
STRUCTURED: tuple[str, ...] = get_args(StructuredMethod)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
SECRET_KEYS = frozenset({"api_key", "key", "token", "secret", "password"})
PROFILE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(UsageError):
    """The config file cannot be read, is not TOML, or says something plait cannot use."""


# Where in the file: table names, and a member's index in a pool (``("pools", "gpus", 0)``).
Loc = tuple[str | int, ...]
# Builds the error for a location and key, naming the file and line.
Fail = Callable[[Loc, str | None, str], ConfigError]


class _Table(BaseModel):
    # strict: TOML already has types; "60" where a number belongs is a mistake, not a number.
    model_config = ConfigDict(extra="forbid", strict=True)


Price = Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)]


class Profile(_Table):
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    structured: StructuredMethod | None = None
    limit: int | None = Field(None, ge=1)
    price: Price | None = None
    args: dict[str, Any] = {}


class Member(_Table):
    model: str
    base_url: str | None = None
    limit: int | None = Field(None, ge=1)
    capabilities: list[str] = []
    name: str | None = None


class Pool(_Table):
    strategy: Strategy | None = None
    members: list[Member] = Field(min_length=1)


class Budget(_Table):
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, ge=0)
    max_calls: int | None = Field(None, ge=1)


class FileConfig(_Table):
    model: str | None = None
    fallbacks: list[str] = []
    structured: StructuredMethod | None = None
    models: dict[str, Profile] = {}
    roles: dict[str, str] = {}
    pools: dict[str, Pool] = {}
    prices: dict[str, Price] = {}
    budget: Budget = Budget()
    run: dict[str, Any] = {}  # checked against RUN_OPTIONS, the same rules as --set


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use: ``--config``, else ``PLAIT_CONFIG``, else ``./plait.toml``, else
    ``plait.toml`` in the per-user config folder; None when there is none.

    Raises:
        ConfigError: a file named by ``--config`` or ``PLAIT_CONFIG`` does not exist.
    """
    for named, origin in ((explicit, "--config"), (os.environ.get("PLAIT_CONFIG"), "PLAIT_CONFIG")):
        if named is not None and str(named).strip():
            path = Path(named).expanduser()
            if not path.exists():
                raise ConfigError(f"config file {str(path)!r} (from {origin}) does not exist")
            return path
    for path in (Path(FILE_NAME), Path(typer.get_app_dir("plait")) / FILE_NAME):
        if path.exists():
            return path
    return None


def load_config(path: Path) -> dict[str, Any]:
    """The ``RunSettings`` fields the file sets (only those it sets).

    Raises:
        ConfigError: unreadable, malformed, an unknown key or value, or a secret in the file;
            the message names the file and, when it can be found, the line.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_toml_message(path, str(exc), text)) from None

    def fail(table: Loc, key: str | None, message: str) -> ConfigError:
        line, message = _line_of(text, table, key), message.strip()
        return ConfigError(f"{path}:{line}: {message}" if line else f"{path}: {message}")

    _check_raw(raw, fail)
    try:
        config = FileConfig.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc.errors()[0], fail) from None
    for table, url in _base_urls(config):
        try:
            check_base_url(url, f"{_label(table)} base_url", "a variable named by api_key_env")
        except UsageError as exc:
            raise fail(table, "base_url", str(exc)) from None
    return _settings_fields(config, fail)


def effective(flags: Mapping[str, Any], path: Path | None) -> tuple[RunSettings, dict[str, str]]:
    """The settings a new run gets from flags, the file at ``path``, the environment and the
    defaults, and where each came from: ``flag``, ``file:PATH``, ``env`` or ``default``.

    ``flags`` holds ``RunSettings`` fields as given on the command line; None or empty means
    not given. ``model_for`` and ``options`` merge key by key (``model_for.ROLE``,
    ``options.NAME`` in the sources); ``fallbacks`` from a flag replace the file's.

    Raises:
        ConfigError: as ``load_config``.
    """
    from plait.models.spec import default_model_spec

    from_file = load_config(path) if path is not None else {}
    in_file = f"file:{path}"
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def choose(name: str, default: Any = None, default_source: str = "default") -> None:
        if flags.get(name) not in (None, [], {}):
            values[name], sources[name] = flags[name], "flag"
        elif from_file.get(name) not in (None, [], {}):
            values[name], sources[name] = from_file[name], in_file
        else:
            values[name], sources[name] = default, default_source

    env_model, notice = default_model_spec()
    choose("model", env_model, "default" if notice else "env")
    # OPENAI_BASE_URL stays out of the settings, as before: the model loader reads it.
    choose("base_url", None, "env" if os.environ.get("OPENAI_BASE_URL") else "default")
    choose("fallbacks", [])
    choose("structured", "auto")
    for name in ("max_tokens", "max_cost", "max_calls"):
        choose(name)
    choose("approve_before", [])
    for name in ("model_for", "options"):
        values[name] = {}
        for origin, given in ((in_file, from_file.get(name)), ("flag", flags.get(name))):
            for key, value in (given or {}).items():
                values[name][key], sources[f"{name}.{key}"] = value, origin
    for option in RUN_OPTIONS:
        sources.setdefault(f"options.{option.name}", "default")
    for name in ("models", "pools", "prices"):
        values[name] = from_file.get(name, {})
        sources.update({f"{name}.{key}": in_file for key in values[name]})
    return RunSettings(**values), sources


def run_option(name: str, value: Any) -> Any:
    """A run option (timeout, retries, ...) given as a TOML value, checked by the same rules
    as ``--set``; ``role_timeouts`` may be a table ``{ROLE = SECONDS}``.

    Raises:
        OptionError: an unknown option or a bad value.
    """
    known = {option.name: option for option in RUN_OPTIONS}
    if name not in known:
        raise OptionError(f"unknown key {name!r}; valid: {', '.join(known)}")
    if isinstance(value, dict):
        for role, seconds in value.items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise OptionError(f"{name}.{role} must be a number of seconds above 0")
        value = [f"{role}={seconds}" for role, seconds in value.items()]
    if isinstance(value, list):
        value = ",".join(str(item) for item in value)
    if isinstance(value, bool) and known[name].type != "bool":  # str(True) would pass as text
        raise OptionError(f"option {name!r} takes {known[name].type_label()}, got {value!r}")
    return known[name].parse(str(value))


def _settings_fields(config: FileConfig, fail: Fail) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": config.model,
        "fallbacks": list(config.fallbacks),
        "structured": config.structured,
        "model_for": dict(config.roles),
        "models": {name: p.model_dump(exclude_unset=True) for name, p in config.models.items()},
        "pools": {name: p.model_dump(exclude_unset=True) for name, p in config.pools.items()},
        "prices": {name: list(price) for name, price in config.prices.items()},
        **config.budget.model_dump(exclude_none=True),
    }
    options: dict[str, Any] = {}
    for name, value in config.run.items():
        try:
            options[name] = run_option(name, value)
        except OptionError as exc:
            raise fail(("run",), name, f"[run] {exc}") from None
    fields["options"] = options
    return {key: value for key, value in fields.items() if value not in (None, [], {})}


def _check_raw(raw: dict[str, Any], fail: Fail) -> None:
    """What pydantic cannot word well: profile names, and secrets written into the file."""
    tables: list[tuple[Loc, Any]] = [((), raw)]
    for kind in ("models", "pools"):
        named = raw.get(kind)
        for name, table in (named if isinstance(named, dict) else {}).items():
            if not PROFILE_NAME.fullmatch(name):
                message = f"[{kind}] name {name!r} may hold only letters, digits, '_', '.', '-'"
                raise fail((kind, name), None, message + " (a ':' would make it a model spec)")
            table = table if isinstance(table, dict) else {}
            tables += [((kind, name), table), ((kind, name, "args"), table.get("args"))]
            members = table.get("members")
            members = members if isinstance(members, list) else []
            tables += [((kind, name, "members", i), member) for i, member in enumerate(members)]
            _check_key_env((kind, name), table.get("api_key_env"), fail)
    for table, values in tables:
        for key in values if isinstance(values, dict) else ():
            if str(key).lower() in SECRET_KEYS:
                advice = "put the key in an environment variable and name it with api_key_env"
                raise fail(
                    table, key, f"{_label(table)} {key!r} would keep a secret in the file; {advice}"
                )


def _check_key_env(table: Loc, value: Any, fail: Fail) -> None:
    if not isinstance(value, str):
        return  # a wrong type is pydantic's to report
    if value.startswith("sk-"):
        why = "it looks like the key itself (not shown)"
    elif not ENV_NAME.fullmatch(value):
        # Never echo what may be a key; a value with a space is plainly not one.
        why = (
            f"{value!r} is not one"
            if " " in value and len(value) < 40
            else "it is not one (not shown)"
        )
    else:
        return
    rule = "api_key_env must be the NAME of the environment variable holding the key"
    raise fail(table, "api_key_env", f"{_label(table)} {rule} ([A-Za-z_][A-Za-z0-9_]*); {why}")


def _validation_error(error: ErrorDetails, fail: Fail) -> ConfigError:
    loc = error["loc"]
    key = next((part for part in reversed(loc) if isinstance(part, str)), "")
    table = tuple(loc[: len(loc) - 1 - loc[::-1].index(key)]) if key else tuple(loc)
    label, kind = _label(table), error["type"]
    if kind == "extra_forbidden":
        where = f"{label} unknown key" if table else "unknown top-level key"
        return fail(table, key, f"{where} {key!r}; valid: {', '.join(_valid_keys(table))}")
    if kind == "missing":
        return fail(table, None, f"{label} needs {key!r}")
    if kind == "literal_error" and key in ("structured", "strategy"):
        what, valid = {"structured": ("structured method", STRUCTURED)}.get(
            key, ("pool strategy", STRATEGIES)
        )
        message = f"{label} unknown {what} {error['input']!r}; valid: {', '.join(valid)}"
        return fail(table, key, message)
    index = "".join(f"[{part}]" for part in loc[len(table) + 1 :])
    shown = error.get("input")
    short = isinstance(shown, int | float | str) and len(str(shown)) < 60
    got = f"; got {shown!r}" if short else ""
    return fail(table, key, f"{label} {key}{index}: {error['msg']}{got}")


def _label(table: Loc) -> str:
    """``[pools.gpus] member 0`` for a location in the file; empty at the top level."""
    names = [str(p) for p in table if isinstance(p, str)]
    if table and isinstance(table[-1], int):
        return f"[{'.'.join(names[:-1])}] member {table[-1]}"
    return f"[{'.'.join(names)}]" if names else ""


def _valid_keys(table: Loc) -> list[str]:
    """The keys the table at ``table`` accepts, found by walking the models' annotations."""
    kind: Any = FileConfig
    for part in table:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[str(part)].annotation
            continue
        while get_origin(kind) is Annotated or type(None) in get_args(kind):
            kind = next(a for a in get_args(kind) if a is not type(None))
        kind = get_args(kind)[-1]  # dict[str, X] or list[X]: X
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


def _base_urls(config: FileConfig) -> list[tuple[Loc, str]]:
    urls: list[tuple[Loc, str | None]] = [
        (("models", n), p.base_url) for n, p in config.models.items()
    ]
    for name, pool in config.pools.items():
        urls += [(("pools", name, "members", i), m.base_url) for i, m in enumerate(pool.members)]
    return [(table, url) for table, url in urls if url]


def _toml_message(path: Path, message: str, text: str) -> str:
    # tomllib ends its messages with "(at line X, column Y)" or "(at end of document)";
    # editors jump to PATH:LINE:COLUMN.
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        return f"{path}:{found[1]}:{found[2]}: {message[: found.start()]}"
    end = re.search(r"\s*\(at end of document\)$", message)
    if end:
        lines = text.split("\n")
        return f"{path}:{len(lines)}:{len(lines[-1]) + 1}: {message[: end.start()]} at the end"
    return f"{path}: {message}"


def _line_of(text: str, table: Loc, key: str | None) -> int | None:
    """The line where ``key`` is set in ``[table]`` (its header line for None), else in the
    nearest enclosing table. A plain scan, not a parser: enough for hand-written files.
    """
    header = re.compile(r"^\s*\[\[?\s*([^\]]*?)\s*\]\]?\s*(#.*)?$")
    headers: dict[tuple[str, ...], int] = {}
    lines: dict[tuple[str, ...], list[tuple[int, str]]] = {}
    current: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if found := header.match(line):
            current = tuple(p.strip().strip("\"'") for p in found[1].split("."))
            headers.setdefault(current, number)
        else:
            lines.setdefault(current, []).append((number, line))
    names = tuple(part for part in table if isinstance(part, str))
    for depth in range(len(names), -1, -1):
        here = names[:depth]
        if key is None and here in headers:
            return headers[here]
        # A table without a header of its own is set inline in its parent: `name = {...}`.
        if key is None and not depth:
            return None
        wanted, within = (key, here) if key is not None else (here[-1], here[:-1])
        setting = re.compile(rf"(^|[{{,\s])[\"']?{re.escape(str(wanted))}[\"']?\s*=")
        for number, line in lines.get(within, []):
            if setting.search(line):
                return number
    return None

"""``plait config show``: the settings a new run would get, and where each comes from."""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from plait.cli.options import (
    BaseUrlOpt,
    ConfigOpt,
    FallbackOpt,
    JsonOpt,
    MaxCallsOpt,
    MaxCostOpt,
    MaxTokensOpt,
    ModelForOpt,
    ModelOpt,
    RunSetOpt,
    parse_model_for,
)
from plait.cli.output import cli_errors, out, print_json
from plait.secrets import mask_url  # one masking rule for everything plait shows

app = typer.Typer(
    help="The config file, plait.toml: `plait config show` prints what a run would use.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SCALARS = ("model", "base_url", "fallbacks", "structured", "max_tokens", "max_cost", "max_calls")
TABLES = ("model_for", "options", "models", "pools", "prices")


@app.command("show")
def show_command(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    model_for: ModelForOpt = [],  # noqa: B006
    base_url: BaseUrlOpt = None,
    fallback_model: FallbackOpt = [],  # noqa: B006
    max_tokens: MaxTokensOpt = None,
    max_cost: MaxCostOpt = None,
    max_calls: MaxCallsOpt = None,
    set_: RunSetOpt = [],  # noqa: B006
    json_: JsonOpt = False,
) -> None:
    """Print the settings a new `plait run` would use and where each comes from: a flag,
    the config file, the environment, or the default.

    Give the same flags as to `plait run` to see how they combine with the file. Keys are
    never shown: only the names of the variables that hold them, and whether each is set.
    """
    from plait.config import effective, find_config
    from plait.graphs.registry import parse_run_options

    with cli_errors():
        options = parse_run_options(set_)
        flags = {
            "model": model,
            "model_for": parse_model_for(model_for),
            "base_url": base_url,
            "fallbacks": fallback_model,
            "options": options,
            "max_tokens": max_tokens,
            "max_cost": max_cost,
            "max_calls": max_calls,
        }
        path = find_config(config)
        settings, sources = effective(flags, path)
        document = describe(settings, sources, path)
        if json_:
            print_json(document)
        else:
            _print_table(document)


def describe(settings: Any, sources: dict[str, str], path: Any) -> dict[str, Any]:
    """The ``--json`` document: each setting as ``{"value", "source"}``, keys masked."""
    document: dict[str, Any] = {"config": str(path) if path else None, "settings": {}}
    shown = document["settings"]
    for name in SCALARS:
        value = getattr(settings, name)
        if name == "base_url":
            # OPENAI_BASE_URL is read by the model loader, not stored; show what it will use.
            value = mask_url(value or os.environ.get("OPENAI_BASE_URL") or None)
        shown[name] = {"value": value, "source": sources[name]}
    values = {
        "model_for": settings.model_for,
        "options": {
            name.partition(".")[2]: settings.option(name.partition(".")[2])
            for name in sources
            if name.startswith("options.")
        },
        "models": {name: _masked(profile) for name, profile in settings.models.items()},
        "pools": {name: _masked(pool) for name, pool in settings.pools.items()},
        "prices": settings.prices,
    }
    for table in TABLES:
        shown[table] = {
            key: {"value": value, "source": sources.get(f"{table}.{key}", "default")}
            for key, value in values[table].items()
        }
    names = {"OPENAI_API_KEY"} | {
        p["api_key_env"] for p in settings.models.values() if p.get("api_key_env")
    }
    document["keys"] = {
        name: "set" if os.environ.get(name) else "not set" for name in sorted(names)
    }
    return document


def _masked(table: dict[str, Any]) -> dict[str, Any]:
    masked: dict[str, Any] = {k: mask_url(v) if k == "base_url" else v for k, v in table.items()}
    if "members" in masked:
        masked["members"] = [_masked(member) for member in masked["members"]]
    return masked


def _print_table(document: dict[str, Any]) -> None:
    out.print(f"config file: {document['config'] or '(none found)'}", markup=False)
    table = Table("setting", "value", "source", box=None, pad_edge=False)
    for name, entry in document["settings"].items():
        items = (
            [(name, entry)]
            if "source" in entry
            else [(f"{name}.{key}", item) for key, item in entry.items()]
        )
        for label, item in items:
            for row, value in _rows(label, item["value"]):
                table.add_row(row, Text(value), item["source"])
    for name, state in document["keys"].items():
        table.add_row(f"key {name}", state, "env")
    out.print(table)


def _rows(label: str, value: Any) -> list[tuple[str, str]]:
    """One row per leaf of a profile or pool, so long tables stay readable."""
    if isinstance(value, dict) and value:
        return [row for key, item in value.items() for row in _rows(f"{label}.{key}", item)]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [row for i, item in enumerate(value) for row in _rows(f"{label}[{i}]", item)]
    if value is None:
        return [(label, "-")]
    return [(label, value if isinstance(value, str) else json.dumps(value))]

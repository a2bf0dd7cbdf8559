"""Flags that mean the same thing on every command that takes them."""

from __future__ import annotations

from typing import Annotated

import typer

from plait.errors import ModelSpecError

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLite file for checkpoints [default: $PLAIT_DB, else `plait threads path`].",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="demo, PROVIDER:NAME, a bare name like gpt-4o-mini, pool:FILE or a profile from plait.toml [default: the config file's model, else $PLAIT_MODEL, else openai:gpt-4o-mini with OPENAI_API_KEY, else demo].",
        show_default=False,
    ),
]
ModelForOpt = Annotated[
    list[str],
    typer.Option(
        "--model-for",
        help="ROLE=SPEC: the model for one role, e.g. planner=openai:gpt-4o (repeatable; merged over the config file's [roles]).",
        show_default=False,
    ),
]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="The endpoint of every model that has one: an OpenAI-compatible server, Ollama, a proxy [default: $OPENAI_BASE_URL for openai: models].",
        show_default=False,
    ),
]
ResumeModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Use this model (a spec, or a profile from the thread or the config file) from now on instead of the stored one.",
        show_default=False,
    ),
]
FallbackOpt = Annotated[
    list[str],
    typer.Option(
        "--fallback-model",
        help="A model to use when the primary keeps failing (repeatable, tried in order).",
        show_default=False,
    ),
]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-tokens",
        min=1,
        help="Stop cleanly (exit 4) once the thread has used this many tokens.",
        show_default=False,
    ),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        min=0.0,
        help="Stop cleanly (exit 4) once the thread has cost this many USD (see PLAIT_PRICES).",
        show_default=False,
    ),
]
MaxCallsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-calls",
        min=1,
        help="Stop cleanly (exit 4) once the thread has made this many model calls.",
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="The config file [default: $PLAIT_CONFIG, else ./plait.toml, else plait.toml in the per-user config folder]; flags override it.",
        show_default=False,
    ),
]
ResumeConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="A config file whose profiles, pools and prices --model, --model-for and --fallback-model may name; the thread's stored settings win over it [default: as for run].",
        show_default=False,
    ),
]
RunSetOpt = Annotated[
    list[str],
    typer.Option(
        "--set",
        "-s",
        help="A run option, key=value: timeout, role_timeouts, retries, max_concurrency (repeatable).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notices on stderr.")]


def parse_model_for(pairs: list[str]) -> dict[str, str]:
    """``ROLE=SPEC`` pairs to a dict.

    Raises:
        ModelSpecError: a pair without ``=`` or with an empty side.
    """
    chosen: dict[str, str] = {}
    for pair in pairs:
        role, sep, spec = pair.partition("=")
        if not sep or not role.strip() or not spec.strip():
            raise ModelSpecError(f"--model-for takes ROLE=SPEC, got {pair!r}")
        chosen[role.strip()] = spec.strip()
    return chosen

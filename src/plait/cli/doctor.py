"""``plait doctor``: whether every endpoint a run would use is up, keyed and gives structure."""

from __future__ import annotations

import asyncio
import warnings
from typing import TYPE_CHECKING, Annotated

import typer

from plait.cli.options import (
    BaseUrlOpt,
    ConfigOpt,
    FallbackOpt,
    JsonOpt,
    ModelForOpt,
    ModelOpt,
    parse_model_for,
)
from plait.cli.output import cli_errors, err, print_json
from plait.errors import ExitCode

if TYPE_CHECKING:
    from plait.doctor import Check

TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout", min=0.1, help="Seconds each request to an endpoint may take (no retries)."
    ),
]


def doctor_command(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    model_for: ModelForOpt = [],  # noqa: B006
    base_url: BaseUrlOpt = None,
    fallback_model: FallbackOpt = [],  # noqa: B006
    timeout: TimeoutOpt = 20.0,
    json_: JsonOpt = False,
) -> None:
    """Check every endpoint `plait run` would use with these flags and the config file: the
    model, each role's, each fallback, each pool member.

    One line per endpoint on stdout: reachable (and how fast), listed by its /models, key
    accepted, and the structured-output method a tiny structured call succeeds with. Exit
    code 0 when all pass, 1 when any fails, 2 for bad flags or a bad config file.
    """
    from plait.config import effective, find_config
    from plait.doctor import check_all
    from plait.models.spec import default_model_spec

    with cli_errors():
        flags = {
            "model": model,
            "model_for": parse_model_for(model_for),
            "base_url": base_url,
            "fallbacks": fallback_model,
        }
        settings, sources = effective(flags, find_config(config))
        if sources["model"] == "default" and (notice := default_model_spec()[1]):
            err.print(f"note: {notice}", markup=False)
        with warnings.catch_warnings():
            # langchain-openai warns when an endpoint refuses json_schema; the line says so.
            warnings.simplefilter("ignore")
            checks = asyncio.run(check_all(settings, timeout=timeout))
        ok = all(check.ok for check in checks)
        if json_:
            print_json({"ok": ok, "endpoints": [check.as_json() for check in checks]})
        else:
            for check in checks:
                typer.echo(_line(check))
            failed = sum(not check.ok for check in checks)
            summary = f"{failed} of {len(checks)} failed" if failed else "all passed"
            err.print(f"{len(checks)} endpoint(s) checked: {summary}", markup=False)
        if not ok:
            raise typer.Exit(code=int(ExitCode.FAILED))


def _line(check: Check) -> str:
    """``ENDPOINT (roles): ok|warning|FAILED, details``; never a key, only its variable."""
    head = f"{check.endpoint} ({', '.join(check.roles)})"
    if check.error:
        return f"{head}: FAILED, {check.error}"
    parts = ["offline demo model"] if check.offline else [f"reachable in {check.latency_ms} ms"]
    if check.listing:
        parts.append(check.listing)
    if check.key:
        parts.append(f"key {check.key}" + (f" (${check.key_env})" if check.key_env else ""))
    parts.append(f"structured: {check.structured}")
    if check.warning:
        parts.append(check.warning)
    return f"{head}: {'warning' if check.warning else 'ok'}, {', '.join(parts)}"

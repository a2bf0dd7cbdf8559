"""A graph's options, read from its factory's typed keyword signature: the one declaration.

``options_model(factory)`` turns the signature (``Annotated[int, Field(ge=1, description=...)]``,
``Literal[...]``, defaults) into a pydantic model. ``--set key=value``, ``plait graphs show`` and
Python calls (through ``@validated``) are all checked against it, so the same bad value gets the
same one-line message wherever it comes from.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from plait.errors import GraphSetupError, OptionError

F = TypeVar("F", bound=Callable[..., Any])

# Factory parameters that are not options: Python-only hooks (role instructions, callables).
NOT_OPTIONS = frozenset({"prompts", "validators"})


class RunOptions(BaseModel):
    """Options every graph accepts; the runner applies them, not the factory. Parsed once,
    from ``--set``, ``plait.toml`` or the thread's stored settings, by the same rules.
    """

    model_config = ConfigDict(extra="forbid")

    max_concurrency: Annotated[int, Field(ge=1, description="most branches running at once")] = 256
    timeout: Annotated[float, Field(ge=0.001, description="seconds one model call may take")] = (
        120.0
    )
    role_timeouts: Annotated[
        list[str], Field(description="per-role call timeouts, e.g. planner=30,coder=300")
    ] = []
    retries: Annotated[
        int, Field(ge=0, description="retries of a failed model call (429, 5xx, timeout)")
    ] = 2


def parse_run_option(name: str, raw: str) -> Any:
    """One run option's ``--set`` text, typed and checked by ``RunOptions``.

    Raises:
        OptionError: the text does not fit the option's type or range.
    """
    value = parse_text(name, RunOptions.model_fields[name].annotation, raw)
    try:
        RunOptions.model_validate({name: value})
    except ValidationError as exc:
        raise OptionError(_message(exc, RunOptions, "the run")) from None
    return value


@functools.cache
def _model(factory: Callable[..., Any]) -> type[BaseModel]:
    params: Iterable[inspect.Parameter]
    try:
        params = inspect.signature(factory, eval_str=True).parameters.values()
    except NameError:  # an annotation that names nothing importable: take the value as given
        params = [
            p.replace(annotation=inspect.Parameter.empty)
            for p in inspect.signature(factory).parameters.values()
        ]
    fields: dict[str, Any] = {}
    for param in params:
        if param.name in NOT_OPTIONS or param.name.startswith("_"):
            continue
        if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(getattr(factory, "__name__", "options"), __config__=config, **fields)


def options_model(factory: Callable[..., Any]) -> type[BaseModel]:
    """The pydantic model of ``factory``'s options (its keyword parameters but ``prompts``),
    built once per factory.
    """
    return _model(inspect.unwrap(factory))


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """The type under ``Annotated``, and its metadata."""
    metadata: list[Any] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata.extend(extra)
    return annotation, metadata


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _without_none(annotation: Any) -> tuple[Any, bool]:
    annotation, _ = _strip(annotation)
    if _is_union(annotation):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def _kind(annotation: Any) -> str:
    """How ``--set`` text becomes a value: int, float, bool, str, choice, list or json."""
    annotation, _ = _without_none(annotation)
    annotation, _ = _strip(annotation)
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str:
        return "str"
    if get_origin(annotation) is Literal:
        return "choice"
    origin = get_origin(annotation)
    if origin in (list, tuple, Sequence, typing.Sequence, set, frozenset):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        if args and all(_takes_text(a) for a in args):
            return "list"
    if annotation is Any:
        return "any"
    return "json"


def _takes_text(annotation: Any) -> bool:
    # str, or a union with str (``str | Stage``: names from the command line, objects from Python)
    annotation, _ = _strip(annotation)
    return annotation is str or (_is_union(annotation) and str in get_args(annotation))


def choices(annotation: Any) -> tuple[Any, ...]:
    """The values a ``Literal`` option may take; empty for other options."""
    annotation, _ = _without_none(annotation)
    annotation, _ = _strip(annotation)
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def type_label(annotation: Any) -> str:
    """What an option takes, in words: ``an int``, ``one of a|b``, ``a comma-separated list``."""
    kind = _kind(annotation)
    if kind == "choice":
        return "one of " + "|".join(str(c) for c in choices(annotation))
    return {
        "int": "an int",
        "float": "a float",
        "bool": "true or false",
        "str": "text",
        "list": "a comma-separated list",
        "json": "JSON",
        "any": "JSON or text",
    }[kind]


def bounds(field: FieldInfo) -> dict[str, Any]:
    """The numeric and length limits of a field (``ge``, ``gt``, ``le``, ``lt``, ``min_length``)."""
    found: dict[str, Any] = {}
    for item in field.metadata:
        for key in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            value = getattr(item, key, None)
            if value is not None:
                found[key] = value
    return found


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(raw)


def parse_text(name: str, annotation: Any, raw: str) -> Any:
    """``--set`` text converted to the type ``annotation`` declares (not yet range-checked).

    Raises:
        OptionError: the text does not read as that type.
    """
    inner, optional = _without_none(annotation)
    if optional and raw.strip().lower() in ("none", "null"):
        return None
    kind = _kind(inner)
    try:
        if kind == "bool":
            return _bool(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            value = float(raw)
            if not math.isfinite(value):
                raise OptionError(f"option {name!r} takes a finite number, got {raw!r}")
            return value
        if kind in ("str", "choice"):
            return raw
        if kind == "list":
            items = [part.strip() for part in raw.split(",") if part.strip()]
            if not items:
                raise ValueError(raw)
            return items
        if kind == "any":
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return raw
        return json.loads(raw)
    except (ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, OptionError):
            raise
        raise OptionError(f"option {name!r} takes {type_label(annotation)}, got {raw!r}") from None


def describe(model: type[BaseModel]) -> str:
    """The valid options and their types, as one line: ``a (an int), b (text)``."""
    return (
        ", ".join(
            f"{name} ({type_label(field.annotation)})" for name, field in _fields(model).items()
        )
        or "none"
    )


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return dict(model.model_fields)


def _annotation(field: FieldInfo) -> Any:
    return field.annotation


def _message(exc: ValidationError, model: type[BaseModel], label: str) -> str:
    error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    name = str(loc[0]) if loc else "?"
    value, ctx, kind = error.get("input"), error.get("ctx") or {}, error["type"]
    if kind == "extra_forbidden":
        return f"{label} has no option {name!r}; valid: {describe(model)}"
    if kind == "missing":
        return f"{label} needs option {name!r} ({type_label(_fields(model)[name].annotation)})"
    limits = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("above", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("below", "lt"),
    }
    if kind in limits and len(loc) == 1:
        words, key = limits[kind]
        return f"{name} must be {words} {ctx[key]}, got {value}"
    if kind == "literal_error" and len(loc) == 1:
        allowed = ", ".join(str(c) for c in choices(_fields(model)[name].annotation))
        return f"option {name!r} must be one of {allowed}; got {value!r}"
    if kind == "too_short" and len(loc) == 1:
        return f"{name} needs at least {ctx.get('min_length')} item(s), got {len(value or ())}"
    if len(loc) == 1 and (kind.endswith("_type") or kind.endswith("_parsing")):
        return f"option {name!r} takes {type_label(_fields(model)[name].annotation)}, got {value!r}"
    where = ".".join(str(part) for part in loc)
    return f"option {where}: {error['msg']}, got {value!r}"


def check_options(
    factory: Callable[..., Any],
    values: Mapping[str, Any],
    *,
    label: str,
    error: type[Exception] = GraphSetupError,
) -> dict[str, Any]:
    """``values`` checked against ``factory``'s options model; returns the given keys,
    validated (``"3"`` for an int becomes 3).

    Raises:
        GraphSetupError (or ``error``): one line naming the option, the value and what it takes.
    """
    model = options_model(factory)
    try:
        checked = model.model_validate(dict(values))
    except ValidationError as exc:
        raise error(_message(exc, model, label)) from None
    return {key: getattr(checked, key) for key in values}


def parse_pairs(
    factory: Callable[..., Any],
    pairs: Iterable[str],
    *,
    label: str,
    run_options: Sequence[Any] = (),
) -> dict[str, Any]:
    """``--set key=value`` pairs read by ``factory``'s annotations and checked like a Python
    call; ``run_options`` (each with ``name``, ``parse`` and ``type_label``) parse the keys
    the runner applies.

    Raises:
        OptionError: a malformed pair, an unknown key, or a bad value.
    """
    model = options_model(factory)
    fields = _fields(model)
    extra = {option.name: option for option in run_options}
    parsed: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(f"--set takes key=value, got {pair!r}")
        if key in fields:
            own[key] = parse_text(key, fields[key].annotation, raw)
        elif key in extra:
            parsed[key] = extra[key].parse(raw)
        else:
            valid = [describe(model)] if fields else []
            valid += [f"{o.name} ({o.type_label()})" for o in run_options]
            raise OptionError(f"{label} has no option {key!r}; valid: {', '.join(valid) or 'none'}")
    # Checked, but kept as parsed: the values are stored with the thread, so they stay JSON.
    check_options(factory, own, label=label, error=OptionError)
    return {**own, **parsed}


def option_rows(factory: Callable[..., Any]) -> list[dict[str, Any]]:
    """One row per option: name, type (in words), default, help, and choices or limits."""
    rows = []
    for name, field in _fields(options_model(factory)).items():
        default = None if field.is_required() else field.default
        if isinstance(default, tuple):
            default = list(default)
        row: dict[str, Any] = {
            "name": name,
            "type": type_label(field.annotation),
            "default": _plain(default),
            "help": field.description or "",
        }
        if choices(field.annotation):
            row["choices"] = list(choices(field.annotation))
        row.update(bounds(field))
        rows.append(row)
    return rows


def _plain(value: Any) -> Any:
    # Defaults as JSON shows them: dataclasses and tuples as dicts and lists.
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def validated(factory: F) -> F:
    """Check a factory's keyword arguments against its options model before it runs.

    The same bad value gets the same message from Python as from ``--set``.
    """

    @functools.wraps(factory)
    def wrapper(**kwargs: Any) -> Any:
        options = {k: v for k, v in kwargs.items() if k not in NOT_OPTIONS}
        checked = check_options(factory, options, label=f"{factory.__name__}()")
        return factory(**{**kwargs, **checked})

    return wrapper  # type: ignore[return-value]

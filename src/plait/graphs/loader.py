"""From a graph reference (a prebuilt name, ``file.py:attr`` or ``package.module:attr``) to a
compiled graph with plait's checkpointer.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from plait.errors import GraphSetupError, OptionError, PlaitError, UsageError
from plait.graphs.registry import RUN_OPTIONS, get_entry

# Any graph a factory builds: its state, context and input/output schemas vary by graph.
CompiledGraph = Pregel[Any, Any, Any, Any]

RUN_OPTION_NAMES = {opt.name for opt in RUN_OPTIONS}


def is_reference(ref: str) -> bool:
    """True for ``file.py:attr`` and ``module:attr``; False for a prebuilt graph's name."""
    return ":" in ref


def parse_graph_options(ref: str, pairs: list[str]) -> dict[str, Any]:
    """Typed ``--set`` values, read and checked by the factory's signature (a prebuilt
    graph's or an authored one's); a factory taking ``**kwargs`` gets the keys it does not
    name parsed as by ``parse_free_options``.
    """
    pairs = list(pairs)
    if not is_reference(ref):
        return get_entry(ref).parse_options(pairs)
    if not pairs:
        return {}
    target = _import_reference(ref)
    if isinstance(target, (StateGraph, Pregel)) or not callable(target):
        return parse_free_options(pairs)  # building it says what is wrong
    from plait.graphs.options import options_model, parse_pairs

    if _takes_any(target):
        named = set(options_model(target).model_fields) | RUN_OPTION_NAMES
        mine = [p for p in pairs if p.partition("=")[0].strip() in named]
        rest = [p for p in pairs if p not in mine]
        return {
            **parse_free_options(rest),
            **parse_pairs(target, mine, label=ref, run_options=RUN_OPTIONS),
        }
    return parse_pairs(target, pairs, label=ref, run_options=RUN_OPTIONS)


def _takes_any(factory: Any) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def parse_free_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs, each value JSON where the text is JSON, else the text itself;
    the run options (``timeout``, ``retries``...) are checked against their types.
    """
    run_options = {option.name: option for option in RUN_OPTIONS}
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(f"--set takes key=value, got {pair!r}")
        if key in run_options:
            parsed[key] = run_options[key].parse(raw)
            continue
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def build_graph(
    ref: str,
    options: dict[str, Any],
    checkpointer: BaseCheckpointSaver[Any] | None,
    *,
    approve_before: list[str] | tuple[str, ...] = (),
) -> CompiledGraph:
    """Build and compile the graph ``ref`` names, with ``options`` (run options excluded).

    ``approve_before`` names nodes the run pauses before, for a person's approval. Compiled
    graphs are kept per process (compiling inspects every node's code and costs more than a
    short run), so each call only attaches ``checkpointer`` to a copy.

    Raises:
        GraphSetupError: unknown name, missing file or attribute, or an object that is not a
            graph or a factory of one.
        OptionError: an option the factory does not take.
        UsageError: ``approve_before`` names a node the graph does not have.
    """
    key = (
        ref,
        _source_version(ref),
        json.dumps(options, sort_keys=True, default=repr),
        tuple(approve_before),
    )
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compile(ref, options, tuple(approve_before))
        if len(_compiled) >= _COMPILED_KEPT:
            _compiled.pop(next(iter(_compiled)))
        _compiled[key] = compiled
    return compiled.copy(update={"checkpointer": checkpointer})


_COMPILED_KEPT = 64
_compiled: dict[tuple[Any, ...], CompiledGraph] = {}


def _source_version(ref: str) -> float | None:
    # An authored graph's file may be edited between runs of one process (a notebook, a
    # server): a new modification time means a new graph.
    where = ref.rpartition(":")[0] if is_reference(ref) else ""
    try:
        return os.path.getmtime(where) if where.endswith(".py") else None
    except OSError:
        return None


def _compile(ref: str, options: dict[str, Any], approve_before: tuple[str, ...]) -> CompiledGraph:
    graph_options = {k: v for k, v in options.items() if k not in RUN_OPTION_NAMES}
    target: object
    if is_reference(ref):
        target = _import_reference(ref)
        label = ref
    else:
        target = get_entry(ref).load_factory()
        label = f"graph {ref!r}"
    if not isinstance(target, (StateGraph, Pregel)):
        if not callable(target):
            raise GraphSetupError(f"{label} is neither a graph nor a function that returns one")
        target = _call_factory(target, graph_options, label)
    elif graph_options:
        raise OptionError(f"{label} is a graph object, not a factory; it takes no --set options")
    if isinstance(target, StateGraph):
        target = target.compile()
    elif not isinstance(target, Pregel):
        raise GraphSetupError(
            f"{label} returned {type(target).__name__}, expected a StateGraph or a compiled graph"
        )
    if approve_before:
        nodes = [n for n in target.nodes if not n.startswith("__")]
        unknown = [n for n in approve_before if n not in nodes]
        if unknown:
            raise UsageError(
                f"--approve-before {unknown[0]!r}: {label} has no such node; nodes: {', '.join(nodes)}"
            )
        target = target.copy(update={"interrupt_before_nodes": list(approve_before)})
    return target


def _call_factory(factory: Any, options: dict[str, Any], label: str) -> Any:
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [key for key in options if key not in params and not takes_any]
    if unknown:
        valid = ", ".join(p for p in params if not p.startswith("_")) or "none"
        raise OptionError(f"{label} has no option {unknown[0]!r}; valid: {valid}")
    if not takes_any:
        from plait.graphs.options import check_options

        # The same check (and message) as --set, for options given from Python.
        options = {**options, **check_options(factory, options, label=label, error=OptionError)}
    try:
        return factory(**options)
    except PlaitError:
        raise
    except Exception as exc:
        raise GraphSetupError(f"building {label} failed: {type(exc).__name__}: {exc}") from None


def _import_reference(ref: str) -> Any:
    where, _, attr = ref.rpartition(":")
    if not where or not attr:
        raise GraphSetupError(
            f"graph reference {ref!r} must look like path/file.py:attr or module:attr"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(where)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise GraphSetupError(f"cannot import module {where!r}: {exc}") from None
    if not hasattr(module, attr):
        names = [n for n in vars(module) if not n.startswith("_")]
        raise GraphSetupError(
            f"{where!r} has no attribute {attr!r}; it defines: {', '.join(names[:20]) or 'nothing'}"
        )
    return getattr(module, attr)


def _import_file(where: str) -> Any:
    path = Path(where)
    if not path.is_file():
        raise GraphSetupError(f"graph file {where!r} does not exist")
    name = f"plait_user_graph_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise GraphSetupError(f"cannot load {where!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # A graph file may import the modules beside it, as `python file.py` would let it.
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise GraphSetupError(f"importing {where!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(folder)
    return module

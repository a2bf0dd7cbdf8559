"""plait's exception hierarchy and the exit codes the CLI maps them to.

Library code raises these; only the CLI turns them into a one-line message and an exit code.
Each class also inherits the builtin it resembles, so callers can catch ``ValueError`` or
``LookupError`` without knowing plait.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The CLI's exit codes; documented in the README and in ``plait --help``."""

    DONE = 0
    FAILED = 1  # the run failed; its state is saved and `plait resume` continues it
    USAGE = 2  # bad arguments, options, model spec or graph reference
    WAITING = 3  # paused for a human decision
    BUDGET = 4  # a token, cost or call budget was reached; state saved
    THREAD = 5  # unknown thread, or a thread that cannot be resumed
    DATABASE = 6  # the checkpoint database cannot be opened or is not SQLite
    INTERRUPTED = 130  # Ctrl-C; state saved


class PlaitError(Exception):
    """Base class of every error plait raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(PlaitError, ValueError):
    """The caller asked for something that cannot work: fix the input and try again."""

    exit_code = ExitCode.USAGE


class GraphSetupError(UsageError, TypeError):
    """A graph factory was given arguments it cannot build from, or a graph reference is bad."""


class OptionError(UsageError):
    """A ``--set key=value`` option is unknown or its value has the wrong type."""


class ModelSpecError(UsageError):
    """A model spec is malformed, names an unknown provider, or lacks its credentials."""


class ThreadError(PlaitError, LookupError):
    """A thread id is unknown, or the thread is in a state that forbids the request."""

    exit_code = ExitCode.THREAD


class DatabaseError(PlaitError, OSError):
    """The checkpoint database cannot be opened, created or read."""

    exit_code = ExitCode.DATABASE


class ModelCallError(PlaitError, RuntimeError):
    """A model endpoint failed for good (unreachable, refused, rate limited after retries)."""


class StructuredOutputError(PlaitError, ValueError):
    """An agent's reply could not be turned into the structure its role needs."""

    def __init__(self, agent: str, returned: str, expected: str, problem: str) -> None:
        self.agent, self.returned, self.expected, self.problem = agent, returned, expected, problem
        shown = returned if len(returned) <= 200 else returned[:200] + "…"
        super().__init__(
            f"agent {agent!r} did not return a valid {expected}: {problem}; it returned {shown!r}"
        )

    def __reduce__(self) -> tuple[type[StructuredOutputError], tuple[str, str, str, str]]:
        # keep picklable across process pools and checkpoints
        return (type(self), (self.agent, self.returned, self.expected, self.problem))

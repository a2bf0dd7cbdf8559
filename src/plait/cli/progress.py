"""Progress on stderr while a graph runs: a live status line on a terminal, plain lines in a log."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.status import Status

from plait.cli.output import err, is_tty


class Progress:
    """Receives the runner's events and shows which agents are working and tokens so far."""

    def __init__(self, *, quiet: bool = False, notice: str | None = None) -> None:
        self.quiet, self.notice = quiet, notice
        self.thread_id: str | None = None
        self.running: dict[str, int] = {}
        self.tokens = 0
        self.iteration: int | None = None
        self.status: Status | None = None

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "start":
            self.thread_id = data["thread_id"]
            if self.notice:
                self._line(f"[yellow]note:[/] {self.notice}")
            verb = "resuming" if data["resumed"] else "running"
            graph, thread = escape(data["graph"]), escape(self.thread_id or "")
            self._line(f"{verb} [bold]{graph}[/] · thread [cyan]{thread}[/]")
            return
        if kind == "notice":
            self._line(f"[yellow]note:[/] {escape(data['text'])}")
            return
        name, self.tokens = data["name"], data["tokens"]
        if data.get("iteration") is not None:
            self.iteration = data["iteration"]
        if data["phase"] == "start":
            self.running[name] = self.running.get(name, 0) + 1
        else:
            left = self.running.get(name, 1) - 1
            if left > 0:
                self.running[name] = left
            else:
                self.running.pop(name, None)
            if not is_tty():
                self._line(f"  done: {escape(name)} · {self.tokens:,} tokens")
        self._refresh()

    def _refresh(self) -> None:
        if self.quiet or not is_tty():
            return
        working = ", ".join(f"{n}×{c}" if c > 1 else n for n, c in self.running.items()) or "…"
        parts = [f"working: {working}", f"{self.tokens:,} tokens"]
        if self.iteration is not None:
            parts.insert(1, f"iteration {self.iteration}")
        text = " · ".join(parts)
        if self.status is None:
            self.status = Status(text, console=err)
            self.status.start()
        else:
            self.status.update(text)

    def _line(self, text: str) -> None:
        if not self.quiet:
            err.print(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

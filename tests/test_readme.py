"""The README's examples are run, so they cannot rot: the Python example, every command of the
CLI tour that needs no thread id, and the authored-graph example with its listing."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def section(title: str) -> str:
    """The README text from the heading ``title`` to the next heading of the same level."""
    _, _, rest = README.partition(f"\n{title}\n")
    assert rest, f"README has no heading {title!r}"
    hashes = title.split()[0]
    return re.split(rf"^{hashes} ", rest, flags=re.MULTILINE)[0]


def commands(block: str) -> list[list[str]]:
    """``plait ...`` lines as argv lists, without the leading ``plait`` and trailing comments."""
    return [
        shlex.split(line, comments=True)[1:]
        for line in block.splitlines()
        if line.startswith("plait ")
    ]


TOUR = commands(blocks("sh", section("## Using the CLI"))[0])
AUTHORED = [
    argv
    for argv in commands("\n".join(blocks("sh", section("## Authoring a graph"))))
    if argv[1].startswith("examples/")
]


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_the_python_example_runs(monkeypatch, tmp_path, capsys, cli):
    (example,) = [block for block in blocks("python") if "run(" in block]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLAIT_DB", str(tmp_path / "readme.db"))
    exec(compile(example, "README.md", "exec"), {"__name__": "__readme__"})
    thread_id, status, result = capsys.readouterr().out.rstrip("\n").split(" ", 2)
    assert status == "done"
    assert result.startswith("[demo]")
    shown = cli("threads", "show", thread_id, "--json", "--db", str(tmp_path / "readme.db"))
    assert shown.exit_code == 0, shown.stderr


def test_the_cli_tour_has_the_commands_it_promises():
    assert ["graphs"] in TOUR and ["threads"] in TOUR and ["threads", "path"] in TOUR
    assert any(argv[:2] == ["run", "review"] for argv in TOUR)
    assert any("ID" in argv for argv in TOUR)  # the ones the next test skips exist


def test_every_cli_tour_command_without_a_thread_id_succeeds(cli, in_repo):
    ran = []
    for argv in TOUR:
        if "ID" in argv:
            continue
        result = cli(*argv)
        assert result.exit_code == 0, (argv, result.stderr)
        ran.append(argv)
    assert len(ran) >= 6
    listed = json.loads(cli("threads", "--json").stdout)
    assert [t["status"] for t in listed] == ["done"] * sum(argv[0] == "run" for argv in ran)


def test_the_authored_example_runs_with_its_option(cli, in_repo):
    (argv,) = AUTHORED
    assert argv[-2:] == ["--set", "tone=formal"]
    done = cli(*argv, "--thread", "authored")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("[demo]")
    shown = cli("threads", "show", "authored", "--json")
    assert '"tone": "formal"' in shown.stdout
    assert '"drafter"' in shown.stdout and '"polisher"' in shown.stdout


def test_the_authored_listing_is_the_example_file():
    # Every line the README shows of examples/critique.py is in the file, in order.
    (listing,) = [
        block for block in blocks("python", section("## Authoring a graph")) if "def build" in block
    ]
    source = iter((ROOT / "examples" / "critique.py").read_text().splitlines())
    for line in filter(str.strip, listing.splitlines()):
        assert any(line == candidate for candidate in source), f"not in critique.py: {line}"


PATTERN_ROWS = re.findall(r"^\| [^|]+ \| [^|]+ \| `(plait run [^`]+)` \|", README, re.MULTILINE)


def test_the_pattern_table_has_one_command_per_prebuilt_graph():
    from plait.graphs.registry import GRAPHS

    assert sorted(shlex.split(command)[2] for command in PATTERN_ROWS) == sorted(GRAPHS)


@pytest.mark.parametrize("command", PATTERN_ROWS, ids=lambda c: shlex.split(c)[2])
def test_each_pattern_command_in_the_table_runs(cli, in_repo, command):
    done = cli(*shlex.split(command)[1:], "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["result"].startswith("[demo]")

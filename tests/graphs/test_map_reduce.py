from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from plait import runner
from plait.errors import GraphSetupError, UsageError
from plait.graphs.map_reduce import (
    DOCUMENT_INSTRUCTION,
    create_map_reduce_graph,
    parse_items,
    plan_batches,
    split_document,
)
from plait.models import PlaitContext
from plait.runner import RunFailed, RunSettings
from plait.testing import ScriptedChatModel


def prompt_of(messages) -> str:
    return str(messages[-1].content)


def echo_item(messages) -> str:
    """A mapper reply naming the item it was given, padded to 100 characters."""
    item = prompt_of(messages).rsplit("\n", 1)[-1]
    return f"mapped {item}".ljust(100, ".")


def reduce_levels(model: ScriptedChatModel) -> Counter:
    """How many reducer calls each level had."""
    return Counter(
        int(re.search(r"level (\d+)", prompt_of(m)).group(1)) for m in model.calls["reducer"]
    )


async def run_mr(model, db, *, input=None, task="Summarize each", **options):
    return await runner.run(
        "map-reduce",
        task,
        db=db,
        context=PlaitContext(model=model),
        settings=RunSettings(options=options),
        input=input,
    )


# --- the chunker, the item parser and the level planner, as pure functions ---------------


def test_short_document_is_one_chunk():
    assert split_document("  one short paragraph\n", 100) == ["one short paragraph"]


def test_paragraphs_are_packed_whole_when_they_fit():
    text = "a" * 10 + "\n\n" + "b" * 10 + "\n\n" + "c" * 10
    assert split_document(text, 25) == ["a" * 10 + "\n\n" + "b" * 10, "c" * 10]


def test_a_long_paragraph_splits_at_lines_then_words_then_inside_a_word():
    lines = "\n".join(f"line {i} " + "x" * 10 for i in range(6))  # lines of 17 characters
    assert split_document(lines, 40) == [
        "line 0 xxxxxxxxxx\nline 1 xxxxxxxxxx",
        "line 2 xxxxxxxxxx\nline 3 xxxxxxxxxx",
        "line 4 xxxxxxxxxx\nline 5 xxxxxxxxxx",
    ]
    assert split_document("alpha beta gamma delta", 11) == ["alpha beta", "gamma delta"]
    assert split_document("abcdefghij", 4) == ["abcd", "efgh", "ij"]


def test_chunks_keep_every_word_and_stay_within_the_size():
    text = "\n\n".join(" ".join(f"w{p}-{i}" for i in range(p * 7 + 3)) for p in range(12))
    chunks = split_document(text, 60)
    assert all(len(chunk) <= 60 for chunk in chunks)
    assert " ".join(chunks).split() == text.split()


def test_items_from_lines_json_and_auto_detection():
    assert parse_items("first\n\n  second  \n", "lines", 100) == ["first", "second"]
    array = json.dumps(["one", {"id": 2, "name": "two"}, 3])
    assert parse_items(array, "json", 100) == ["one", '{"id": 2, "name": "two"}', "3"]
    assert parse_items(array, "auto", 100) == parse_items(array, "json", 100)
    assert parse_items("[draft] notes\nmore", "auto", 100) == ["[draft] notes", "more"]
    assert parse_items('{"a": 1}', "auto", 100) == ['{"a": 1}']
    assert parse_items("p1\n\np2", "document", 3) == ["p1", "p2"]


def test_json_mode_rejects_what_is_not_an_array():
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_items("a\nb", "json", 100)
    with pytest.raises(UsageError, match="JSON array, got a JSON dict"):
        parse_items('{"a": 1}', "json", 100)


@pytest.mark.parametrize(
    ("sizes", "limit", "batches"),
    [
        ([5, 5, 5], 100, [[0, 1, 2]]),
        ([5, 5, 5, 5], 10, [[0, 1], [2, 3]]),
        ([4, 4, 4, 4, 4], 12, [[0, 1, 2], [3, 4]]),
        # texts past the limit still pair up, so each level has fewer outputs than the last
        ([20, 20, 20], 10, [[0, 1], [2]]),
        ([20], 10, [[0]]),
        ([], 10, []),
    ],
)
def test_plan_batches_groups_consecutive_texts_within_the_limit(sizes, limit, batches):
    assert plan_batches(sizes, limit) == batches


def test_factory_rejects_bad_arguments_and_lists_the_choices():
    with pytest.raises(GraphSetupError, match="auto"):
        create_map_reduce_graph(mode="csv")
    with pytest.raises(GraphSetupError, match="chunk_size"):
        create_map_reduce_graph(chunk_size=0)
    with pytest.raises(GraphSetupError, match="reduce_chars"):
        create_map_reduce_graph(reduce_chars=0)


@pytest.mark.parametrize("setting", ["mode=csv", "chunk_size=0", "reduce_chars=many"])
def test_a_bad_set_value_is_a_one_line_usage_error(cli, setting):
    done = cli("run", "map-reduce", "Summarize", "--set", setting)
    assert done.exit_code == 2
    assert len(done.stderr.strip().splitlines()) == 1


# --- --input through the CLI, with the demo model -----------------------------------------


def test_input_lines_through_the_cli_map_one_item_per_line(cli, tmp_path):
    path = tmp_path / "items.txt"
    path.write_text("apples\n\nbananas\ncherries\n")
    done = cli("run", "map-reduce", "Describe each fruit", "--input", str(path), "--json")
    assert done.exit_code == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["usage"]["mapper"]["calls"] == 3
    assert outcome["usage"]["reducer"]["calls"] == 1
    assert outcome["stop_reason"] == "one output left: 3 of 3 item outputs reduced in 1 level(s)"
    assert outcome["result"].startswith("[demo]")


def test_input_json_array_through_the_cli_maps_each_element(cli, tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps(["a line", {"title": "an object"}]))
    done = cli("run", "map-reduce", "Describe each", "--input", str(path), "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["usage"]["mapper"]["calls"] == 2


def test_document_mode_through_the_cli_maps_one_item_per_chunk(cli, tmp_path):
    text = "\n\n".join(f"Paragraph {i}. " + "words " * 20 for i in range(5))
    path = tmp_path / "doc.txt"
    path.write_text(text)
    done = cli(
        "run",
        "map-reduce",
        "Summarize",
        "--input",
        str(path),
        "--json",
        "--set",
        "mode=document",
        "--set",
        "chunk_size=300",
    )
    assert done.exit_code == 0, done.stderr
    chunks = len(split_document(text, 300))
    assert chunks > 1
    assert json.loads(done.stdout)["usage"]["mapper"]["calls"] == chunks


# --- the graph, with scripted models -----------------------------------------------------


async def test_without_input_the_task_is_the_document(db):
    task = "Para one is here.\n\nPara two is here."
    script = {"mapper": [echo_item, echo_item], "reducer": ["summary"]}
    with ScriptedChatModel(script) as model:
        outcome = await run_mr(model, db, task=task, chunk_size=20)
    assert outcome.values["items"] == ["Para one is here.", "Para two is here."]
    assert prompt_of(model.calls["mapper"][0]).startswith(f"Task: {DOCUMENT_INSTRUCTION}")


async def test_each_mapper_receives_only_its_own_item(db):
    items = ["alpha-item", "beta-item", "gamma-item"]
    script = {"mapper": [echo_item] * 3, "reducer": ["combined"]}
    with ScriptedChatModel(script) as model:
        outcome = await run_mr(model, db, input="\n".join(items))
    for call in model.calls["mapper"]:
        assert sum(item in prompt_of(call) for item in items) == 1
    assert sorted(outcome.values["mapped"]) == ["1", "2", "3"]
    assert outcome.values["mapped"]["2"].startswith("mapped beta-item")


async def test_outputs_that_fit_one_context_are_reduced_in_one_call(db):
    script = {"mapper": [echo_item] * 3, "reducer": ["the answer"]}
    with ScriptedChatModel(script) as model:
        outcome = await run_mr(model, db, input="a\nb\nc")
    assert outcome.result == "the answer"
    assert outcome.values["levels"] == 1
    assert "final (level 1)" in prompt_of(model.calls["reducer"][0])


async def test_outputs_too_big_for_one_context_are_reduced_in_levels(db):
    # 8 outputs of ~111 characters with 250 a call: 4 batches, then 2, then the final one.
    partial = "R" * 100
    script = {"mapper": [echo_item] * 8, "reducer": [partial] * 6 + ["the answer"]}
    with ScriptedChatModel(script) as model:
        outcome = await run_mr(
            model, db, input="\n".join(f"item{i}" for i in range(8)), reduce_chars=250
        )
    assert reduce_levels(model) == {1: 4, 2: 2, 3: 1}
    assert outcome.values["levels"] == 3
    assert outcome.values["reduce_plan"] == [
        [[0, 1], [2, 3], [4, 5], [6, 7]],
        [[0, 1], [2, 3]],
        [[0, 1]],
    ]
    assert outcome.result == "the answer"
    assert "reduced in 3 level(s)" in outcome.stop_reason
    first_batch = prompt_of(model.calls["reducer"][0])
    assert "mapped item0" in first_batch and "mapped item1" in first_batch
    assert "mapped item2" not in first_batch
    final = prompt_of(model.calls["reducer"][-1])
    assert "final (level 3)" in final and "mapped" not in final


async def test_a_failed_item_is_recorded_told_to_the_reducer_and_listed(db):
    def mapper(messages):
        if "broken" in prompt_of(messages):
            raise RuntimeError("mapper endpoint down")
        return echo_item(messages)

    script = {"mapper": [mapper] * 3, "reducer": ["answer from two"]}
    with ScriptedChatModel(script) as model:
        outcome = await run_mr(model, db, input="fine one\nbroken\nfine two")
    assert list(outcome.errors) == ["2"]
    assert "mapper endpoint down" in outcome.errors["2"]
    assert sorted(outcome.values["mapped"]) == ["1", "3"]
    assert outcome.values["missing"] == [2]
    reducer = prompt_of(model.calls["reducer"][0])
    assert "Missing items:\nitem 2: " in reducer
    assert outcome.result.startswith(
        "answer from two\n\nMissing items (their mapper failed): item 2: "
    )
    assert "2 of 3 item outputs" in outcome.stop_reason


async def test_every_item_failing_fails_the_run_and_resume_retries_them(db):
    # Both items fail, are sent to the mappers once more in the same run, fail again: the run
    # stops as failed. A resume (an endpoint back up) retries exactly those items.
    down = ScriptedChatModel({"mapper": [RuntimeError("down")] * 4})
    with down, pytest.raises(RunFailed, match="every item failed") as failed:
        await run_mr(down, db, input="a\nb")
    back = ScriptedChatModel({"mapper": [echo_item] * 2, "reducer": ["both"]})
    with back:
        outcome = await runner.resume(
            failed.value.thread_id, db=db, context=PlaitContext(model=back)
        )
    assert outcome.result == "both"
    assert outcome.values["missing"] == []


async def test_input_without_items_fails_the_run_clearly(db):
    # A usage mistake found while running: a UsageError (exit 2), not a resumable failure.
    with ScriptedChatModel({}) as model, pytest.raises(UsageError, match="no items"):
        await run_mr(model, db, input="\n  \n")


async def test_a_failed_reducer_fails_the_run_and_resume_reruns_only_it(db):
    partial = "P" * 100
    first = ScriptedChatModel(
        {"mapper": [echo_item] * 4, "reducer": [partial, partial, RuntimeError("reducer down")]}
    )
    with first, pytest.raises(RunFailed, match="reducer down") as failed:
        await run_mr(first, db, input="w\nx\ny\nz", reduce_chars=250)
    second = ScriptedChatModel({"reducer": ["the answer"]})
    with second:
        outcome = await runner.resume(
            failed.value.thread_id, db=db, context=PlaitContext(model=second)
        )
    assert outcome.result == "the answer"
    assert outcome.values["levels"] == 2
    assert "final (level 2)" in prompt_of(second.calls["reducer"][0])


async def test_a_failed_items_paid_for_calls_are_counted_under_its_item(db):
    # Empty replies are paid for; the item fails after the last of them, and its usage stays.
    def mapper(messages):
        return "" if "hollow" in prompt_of(messages) else echo_item(messages)

    script = {"mapper": [mapper] * 4, "reducer": ["answer"]}
    with ScriptedChatModel(script) as model:
        outcome = await run_mr(model, db, input="fine\nhollow")
    assert list(outcome.errors) == ["2"]
    assert outcome.usage["mapper"]["calls"] == 4
    assert outcome.usage["mapper"]["branches"]["2"]["calls"] == 3
    failures = [e for e in outcome.values["log"] if e["kind"] == "failure"]
    assert [(e["sender"], e["receiver"], e["correlation_id"]) for e in failures] == [
        ("mapper", "reducer", "2")
    ]

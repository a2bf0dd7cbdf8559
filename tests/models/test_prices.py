import json
import subprocess
import sys
import textwrap
import threading

import genai_prices
import pytest

from plait.errors import UsageError
from plait.models.prices import cost_of, price_of


def genai(model: str, provider_id: str | None = None) -> tuple[float, float]:
    found = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=0, output_tokens=0), model, provider_id=provider_id
    )
    return float(found.model_price.input_mtok), float(found.model_price.output_mtok)


@pytest.fixture(autouse=True)
def no_price_file(monkeypatch):
    monkeypatch.delenv("PLAIT_PRICES", raising=False)


@pytest.fixture
def price_file(tmp_path, monkeypatch):
    def write(content: str):
        path = tmp_path / "prices.json"
        path.write_text(content)
        monkeypatch.setenv("PLAIT_PRICES", str(path))
        return path

    return write


def test_a_well_known_model_has_the_price_genai_prices_reports():
    price = price_of("gpt-4o-mini")
    assert price == genai("gpt-4o-mini")
    assert price[0] > 0 and price[1] > 0
    assert price_of("gpt-4o-mini", provider="openai") == price
    assert cost_of("gpt-4o-mini", 1_000_000, 2_000_000) == pytest.approx(price[0] + 2 * price[1])


def test_a_dated_variant_is_priced_as_its_model():
    assert price_of("gpt-4o-mini-2024-07-18") == genai("gpt-4o-mini")
    assert price_of("claude-sonnet-4-20250514", provider="anthropic") == genai("claude-sonnet-4-0")


def test_an_unknown_model_has_no_price_and_costs_nothing():
    assert price_of("no-such-model-xyz") is None
    assert price_of("m", provider="openai") is None  # e.g. a local OpenAI-compatible server
    assert cost_of("no-such-model-xyz", 1000, 1000) == 0.0


def test_the_existing_positional_call_still_works():
    assert cost_of("gpt-4o-mini", 1000, 0) == pytest.approx(genai("gpt-4o-mini")[0] / 1000)


def test_overrides_win_over_price_file_and_genai_prices(price_file):
    price_file(json.dumps({"gpt-4o-mini": [7.0, 8.0], "mine": [3.0, 4.0]}))
    overrides = {"gpt-4o-mini": [1.0, 2.0]}
    assert price_of("gpt-4o-mini", overrides=overrides) == (1.0, 2.0)
    assert price_of("gpt-4o-mini-2024-07-18", overrides=overrides) == (1.0, 2.0)  # prefix
    assert price_of("gpt-4o-mini") == (7.0, 8.0)  # the file beats genai-prices
    assert price_of("mine", overrides=overrides) == (3.0, 4.0)  # the file still answers
    assert cost_of("gpt-4o-mini", 1_000_000, 1_000_000, overrides=overrides) == 3.0


def test_the_longest_override_prefix_wins():
    overrides = {"gpt-4o": [1.0, 1.0], "gpt-4o-mini": [2.0, 2.0]}
    assert price_of("gpt-4o-mini-2024-07-18", overrides=overrides) == (2.0, 2.0)
    assert price_of("gpt-4o-2024-08-06", overrides=overrides) == (1.0, 1.0)


def test_a_bad_override_is_a_usage_error():
    with pytest.raises(UsageError, match=r"\[prices\]"):
        price_of("x", overrides={"x": [1.0]})


def test_a_price_file_prices_unknown_models(price_file):
    price_file(json.dumps({"my-model": [0.2, 0.8]}))
    assert price_of("my-model") == (0.2, 0.8)
    assert price_of("my-model-v2") == (0.2, 0.8)
    assert cost_of("my-model", 1_000_000, 1_000_000) == pytest.approx(1.0)


@pytest.mark.parametrize("content", ["not json", '{"m": 3}', '["m"]', '{"m": ["x", 1]}'])
def test_a_bad_price_file_is_a_usage_error_naming_it(price_file, content):
    path = price_file(content)
    with pytest.raises(UsageError, match="PLAIT_PRICES file") as error:
        price_of("m")
    assert str(path) in str(error.value)


def test_a_missing_price_file_is_a_usage_error_naming_it(tmp_path, monkeypatch):
    missing = tmp_path / "nope.json"
    monkeypatch.setenv("PLAIT_PRICES", str(missing))
    with pytest.raises(UsageError, match="PLAIT_PRICES file") as error:
        cost_of("gpt-4o-mini", 1, 1)
    assert str(missing) in str(error.value)


def test_the_fake_and_local_models_are_known_and_free(price_file):
    assert price_of("demo") == (0.0, 0.0)
    assert price_of("demo", provider="demo") == (0.0, 0.0)
    assert price_of("scripted") == (0.0, 0.0)
    assert price_of("demo@a") == (0.0, 0.0)
    assert price_of("llama3.2:3b", provider="ollama") == (0.0, 0.0)
    assert cost_of("demo", 10**6, 10**6) == 0.0
    # ... unless priced by the user (tests price the demo model to exercise --max-cost).
    price_file(json.dumps({"demo": [1.0, 2.0]}))
    assert price_of("demo") == (1.0, 2.0)
    assert price_of("demo", overrides={"demo": [3.0, 4.0]}) == (3.0, 4.0)


def test_a_pool_member_tag_is_not_part_of_the_model_name():
    assert price_of("gpt-4o-mini@gpu1") == genai("gpt-4o-mini")
    assert price_of("gpt-4o-mini-2024-07-18@b", provider="openai") == genai("gpt-4o-mini")
    assert price_of("no-such-model@gpu1") is None
    # Vertex AI's own names carry a version after '@'; in a pool, a member label follows it.
    assert price_of("claude-3-5-sonnet@20240620@m", provider="google_vertexai") == genai(
        "claude-3-5-sonnet", "anthropic"
    )


def test_the_provider_hint_is_used_for_an_anthropic_model():
    assert price_of("claude-haiku-4-5", provider="anthropic") == genai(
        "claude-haiku-4-5", "anthropic"
    )
    # Bedrock's name for a Claude model is priced only with the hint (mapped to "aws")...
    bedrock = "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert price_of(bedrock) is None
    assert price_of(bedrock, provider="bedrock_converse") == genai(bedrock, "aws")
    # ... and the hint narrows the search: Anthropic does not serve gpt-4o-mini.
    assert price_of("gpt-4o-mini", provider="anthropic") is None


def test_langchain_provider_names_map_to_genai_prices_providers():
    assert price_of("gemini-2.5-flash", provider="google_genai") == genai("gemini-2.5-flash")
    assert price_of("mistral-large-latest", provider="mistralai") == genai(
        "mistral-large-latest", "mistral"
    )
    assert price_of("gpt-4o-mini", provider="azure_openai") == genai("gpt-4o-mini")
    # A provider genai-prices does not know: the model name alone decides.
    assert price_of("gpt-4o-mini", provider="huggingface") == genai("gpt-4o-mini")


def test_tiered_prices_use_the_base_tier():
    found = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=0, output_tokens=0), "gemini-2.5-pro", provider_id="google"
    )
    assert isinstance(found.model_price.input_mtok, genai_prices.types.TieredPrices)
    assert price_of("gemini-2.5-pro", provider="google_genai") == (
        float(found.model_price.input_mtok.base),
        float(found.model_price.output_mtok.base),
    )


def test_price_lookups_never_touch_the_network(monkeypatch):
    import socket

    from plait.models import prices

    def refuse(*args, **kwargs):
        raise AssertionError(f"a price lookup touched the network: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    prices._genai_price.cache_clear()
    assert price_of("gpt-4o-mini-2024-07-18") == genai("gpt-4o-mini")
    assert price_of("unknown-model-abc", provider="openai") is None
    assert not [t for t in threading.enumerate() if t.name.startswith("genai_prices")]


def test_plait_imports_genai_prices_only_for_a_lookup_that_needs_it():
    code = textwrap.dedent(
        """
        import socket, sys
        def refuse(*args, **kwargs):
            raise SystemExit(f"network: {args}")
        socket.getaddrinfo = refuse
        socket.socket.connect = refuse
        from plait.models.prices import cost_of, price_of
        assert cost_of("demo", 100, 100) == 0.0
        assert "genai_prices" not in sys.modules, "imported for the demo model"
        assert price_of("gpt-4o-mini")[0] > 0
        assert "genai_prices" in sys.modules
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr

"""The model catalogue: the bundled data, name resolution, prices, and the refresh from GET /v1/models."""

import asyncio
import json
import logging
import os
import re
import stat

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convo
from convo import Catalogue, Client, ModelInfo, PriceTable
from convo import _models_live as live
from convo.models import DEFAULT_MODEL, lookup

KEY = "sk-ant-test-models-0123456789"
DOCS = re.compile(r"^https://platform\.claude\.com/docs/[a-z-]+/")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RATES = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache directory and an empty process cache."""
    monkeypatch.setenv("CONVO_CACHE_DIR", str(tmp_path / "cache"))
    live.clear_memory()
    yield tmp_path / "cache"
    live.clear_memory()


def api_model(mid, *, max_input=None, max_out=None, thinking=None, lifecycle="active", **extra):
    """A ``GET /v1/models`` entry in the API's shape."""
    entry = {"type": "model", "id": mid, "display_name": extra.pop("display_name", mid),
             "created_at": "2026-11-01T00:00:00Z", "lifecycle": lifecycle,
             "max_input_tokens": max_input, "max_tokens": max_out, **extra}
    if thinking is not None:
        entry["capabilities"] = {
            "thinking": {"supported": True, "types": {k: {"supported": v} for k, v in thinking.items()}},
            "effort": {"supported": True},
            "batch": {"supported": True},
        }
    return entry


# -- the bundled data ------------------------------------------------------------------------------


def test_the_bundle_loads_and_names_the_current_lineup():
    catalogue = Catalogue.bundled()
    for mid in ("claude-fable-5-1", "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"):
        assert catalogue.get(mid).status == "active", mid
    for mid in ("claude-opus-5", "claude-sonnet-5", "claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6",
                "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-5"):
        assert catalogue.get(mid).status in ("legacy", "deprecated"), mid
    assert DEFAULT_MODEL in catalogue and lookup(DEFAULT_MODEL).status == "active"


def test_every_entry_has_a_docs_source_and_sane_limits():
    raw = json.loads((convo.models.resources.files("convo") / "data/models.json").read_text())
    fields = set(raw["models"][DEFAULT_MODEL]) | {"sources", "unverified", "notes"}
    for info in Catalogue.bundled():
        entry = raw["models"][info.id]
        assert set(entry) <= fields, info.id
        assert DOCS.match(info.source) and info.source.endswith("/overview"), info.id
        assert all(DOCS.match(s) for s in info.sources), info.id
        assert 0 < info.max_tokens < info.max_input_tokens, info.id
        assert info.max_tokens_batch is None or info.max_tokens_batch > info.max_tokens, info.id
        assert info.sampling in ("free", "exclusive", "default_only") and info.min_cache_tokens > 0
        assert info.thinking.enabled or info.thinking.adaptive, info.id
        for day in (info.released, info.retires):
            assert day is None or DATE.match(day), info.id
        for path in info.unverified:  # each names a real field
            head, _, rest = path.partition(".")
            assert head in entry, (info.id, path)
            if rest:
                node = entry[head]
                for part in rest.split("."):
                    assert isinstance(node, dict) and part in node, (info.id, path)
                    node = node[part]


def test_prices_are_consistent():
    for info in Catalogue.bundled():
        tiers = [info.price] + ([info.price["long_context"]] if info.price.get("long_context") else [])
        for p in tiers:
            assert all(p[r] > 0 for r in RATES), info.id
            # Cache writes cost 1.25x (5 minutes) and 2x (1 hour) of input; reads at most 0.1x.
            assert p["cache_write_5m"] == pytest.approx(1.25 * p["input"]), info.id
            assert p["cache_write_1h"] == pytest.approx(2 * p["input"]), info.id
            assert p["cache_read"] <= 0.1 * p["input"] + 1e-12, info.id
            assert p["output"] > p["input"], info.id
        long = info.price.get("long_context")
        if long:
            assert long["above_input_tokens"] < info.max_input_tokens
            assert all(long[r] > info.price[r] for r in RATES), info.id


def test_names_resolve_to_their_model():
    catalogue = Catalogue.bundled()
    assert catalogue.get("claude-haiku-4-5-20251001").id == "claude-haiku-4-5"
    assert catalogue.get("claude-sonnet-4-5-20250929").id == "claude-sonnet-4-5"
    assert catalogue.get("claude-opus-5-5-latest").id == "claude-opus-5-5"
    assert catalogue.get("claude-opus-4-6-20990101").id == "claude-opus-4-6"  # a dated name of a known model
    assert catalogue.get("claude-imaginary-9") is None and "claude-imaginary-9" not in catalogue
    names = [n for info in catalogue for n in (info.id, *info.aliases, *info.snapshots)]
    assert len(names) == len(set(names))


def test_the_docs_rules_per_model():
    assert not lookup("claude-sonnet-5").thinking.enabled and lookup("claude-sonnet-5").sampling == "default_only"
    assert lookup("claude-opus-5-5").thinking.always_on and not lookup("claude-opus-5").thinking.always_on
    assert lookup("claude-haiku-4-5").prefill and lookup("claude-haiku-4-5").sampling == "exclusive"
    assert not any(lookup(m).prefill for m in ("claude-opus-4-6", "claude-sonnet-4-6", DEFAULT_MODEL))
    assert lookup("claude-haiku-5-5").price["long_context"]["above_input_tokens"] == 100_000


# -- prices built from the catalogue -----------------------------------------------------------------


def test_the_default_price_table_is_the_catalogues():
    table = PriceTable.default()
    for info in Catalogue.bundled():
        for name in (info.id, *info.aliases, *info.snapshots):
            assert table.price(name).input == info.price["input"], name
    assert table.batch_discount == Catalogue.bundled().batch_discount == 0.5
    with pytest.raises(convo.UnknownModelError, match="models.json"):
        table.price("claude-imaginary-9")


def test_custom_tables_still_work():
    table = PriceTable({"m": {"input": 1, "output": 2, "cache_write_5m": 1.25, "cache_write_1h": 2, "cache_read": 0.1}})
    assert table.cost({"input_tokens": 1_000_000, "output_tokens": 1_000_000}, "m") == pytest.approx(3.0)
    with pytest.raises(convo.InvalidConfigError):
        PriceTable({"m": {"input": 1, "output": 2, "cache_write_5m": 1, "cache_write_1h": 2, "cache_read": 0,
                          "long_context": {"above_input_tokens": 0}}})


def test_the_long_context_tier_bills_the_whole_request():
    table = PriceTable.default()
    haiku = lookup("claude-haiku-5-5").price
    long = haiku["long_context"]
    short = table.cost({"input_tokens": 100_000, "output_tokens": 1000}, "claude-haiku-5-5")
    assert short == pytest.approx((100_000 * haiku["input"] + 1000 * haiku["output"]) / 1e6)
    # Cache reads and writes count toward the threshold; above it every token is at the long rates.
    usage = {"input_tokens": 10, "output_tokens": 1000, "cache_read_input_tokens": 90_000,
             "cache_creation_input_tokens": 10_000}
    expected = (10 * long["input"] + 1000 * long["output"] + 90_000 * long["cache_read"]
                + 10_000 * long["cache_write_5m"]) / 1e6
    assert table.cost(usage, "claude-haiku-5-5") == pytest.approx(expected)
    assert table.worst_case("claude-haiku-5-5", 200_000, 0) == pytest.approx(200_000 * long["cache_write_1h"] / 1e6)
    assert table.worst_case("claude-haiku-5-5", 50_000, 0) == pytest.approx(50_000 * haiku["cache_write_1h"] / 1e6)


@given(fresh=st.integers(0, 300_000), read=st.integers(0, 300_000), out=st.integers(0, 128_000),
       batch=st.booleans())
def test_cost_is_the_tier_rates_times_the_tokens(fresh, read, out, batch):
    p = lookup("claude-haiku-5-5").price
    rates = p["long_context"] if fresh + read > 100_000 else p
    usage = {"input_tokens": fresh, "cache_read_input_tokens": read, "output_tokens": out}
    expected = (fresh * rates["input"] + read * rates["cache_read"] + out * rates["output"]) / 1e6
    cost = PriceTable.default().cost(usage, "claude-haiku-5-5", batch=batch)
    assert cost == pytest.approx(expected * (0.5 if batch else 1.0))
    worst = PriceTable.default().worst_case("claude-haiku-5-5", fresh + read, out)
    assert worst >= cost - 1e-12


# -- merging GET /v1/models --------------------------------------------------------------------------


def test_the_api_overrides_limits_and_capabilities_but_not_prices():
    api = [api_model("claude-sonnet-5-5", max_input=2_000_000, max_out=64_000,
                     thinking={"enabled": True, "adaptive": True, "disabled": False}),
           api_model("claude-opus-4-5-20251101", lifecycle="deprecated", retires_at="2027-01-22T00:00:00Z")]
    merged = Catalogue.bundled().merged(api)
    sonnet = merged.get("claude-sonnet-5-5")
    assert (sonnet.max_input_tokens, sonnet.max_tokens) == (2_000_000, 64_000)
    assert sonnet.thinking == convo.models.Thinking(enabled=True, adaptive=True, always_on=True)
    assert sonnet.price == lookup("claude-sonnet-5-5").price and sonnet.capabilities["batch"]["supported"]
    opus = merged.get("claude-opus-4-5")
    assert (opus.status, opus.retires, opus.max_tokens) == ("deprecated", "2027-01-22", 64_000)
    assert lookup("claude-sonnet-5-5").max_tokens == 128_000  # the bundle itself is unchanged


def test_a_model_only_the_api_lists_has_its_limits_and_unknown_prices():
    merged = Catalogue.bundled().merged([api_model("claude-sonnet-9", max_input=3_000_000, max_out=256_000,
                                                   line="sonnet", display_name="Claude Sonnet 9")])
    info = merged.get("claude-sonnet-9")
    assert isinstance(info, ModelInfo) and not info.priced and info.source == convo.models.API_SOURCE
    assert (info.max_input_tokens, info.max_tokens, info.family, info.released) == (
        3_000_000, 256_000, "sonnet", "2026-11-01")
    assert len(merged) == len(Catalogue.bundled()) + 1
    assert Catalogue.bundled().merged([{"no": "id"}, "junk"]).models == Catalogue.bundled().models


# -- the disk and process caches ---------------------------------------------------------------------


def test_a_refresh_is_kept_on_disk_privately_and_expires(private_cache):
    key = live.cache_key("http://127.0.0.1:9", KEY)
    assert KEY not in key
    live.store(key, [api_model("claude-new-1", max_input=10_000, max_out=1_000)], now=1000.0)
    path = private_cache / "models.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in private_cache.iterdir()] == ["models.json"]  # no temporary file left behind
    assert KEY not in path.read_text()
    live.clear_memory()  # as a new process would
    assert "claude-new-1" in live.cached(key, ttl=60, now=1030.0)
    assert live.cached(key, ttl=60, now=1061.0) is None  # older than the TTL
    assert live.cached(live.cache_key("http://127.0.0.1:9", "another-key"), now=1030.0) is None


def test_a_damaged_cache_file_is_ignored(private_cache):
    private_cache.mkdir()
    (private_cache / "models.json").write_text("{not json")
    assert live.cached(live.cache_key(None, KEY)) is None
    live.store(live.cache_key(None, KEY), [])  # and is replaced by a good one
    assert json.loads((private_cache / "models.json").read_text())["format"] == "convo.models"


def test_models_reads_a_fresh_disk_cache_without_asking_the_api(fresh, private_cache):
    client = Client(api_key=KEY, base_url=fresh.base_url)
    live.store(client._models_key(), [api_model("claude-sonnet-5-5", max_input=1_000_000, max_out=32_000)])
    live.clear_memory()
    catalogue = client.models()
    assert catalogue.get(DEFAULT_MODEL).max_tokens == 32_000 and client.catalogue is catalogue
    assert [r for r in fresh.requests if r.path.startswith("/v1/models")] == []
    # Requests are now checked against the refreshed limits.
    with pytest.raises(convo.ModelRuleError, match="32000"):
        client.create([{"role": "user", "content": "Hi"}], max_tokens=40_000)
    assert [r for r in fresh.requests if r.path == "/v1/messages"] == []


def test_offline_falls_back_to_the_bundle_with_one_warning(caplog):
    client = Client(api_key=KEY, base_url="http://127.0.0.1:9", timeout=2)  # nothing listens on port 9
    with caplog.at_level(logging.WARNING, logger="convo"):
        first = client.models()
        second = client.models()
    assert first is second is Catalogue.bundled()
    warnings = [r for r in caplog.records if "could not list models" in r.getMessage()]
    assert len(warnings) == 1 and KEY not in warnings[0].getMessage()


def test_async_offline_falls_back_too(caplog):
    async def main():
        client = convo.AsyncClient(api_key=KEY, base_url="http://127.0.0.1:9", timeout=2)
        try:
            return await client.models()
        finally:
            await client.close()

    with caplog.at_level(logging.WARNING, logger="convo"):
        assert asyncio.run(main()) is Catalogue.bundled()
    assert any("could not list models" in r.getMessage() for r in caplog.records)


# -- against the simulator's GET /v1/models (awaits the simulator branch that adds it) ---------------


def serves_models(sim):
    answer = httpx2.get(f"{sim.base_url}/v1/models", headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    return answer.status_code == 200


def model_gets(sim):
    return [r for r in sim.requests if r.method == "GET" and r.path == "/v1/models"]


@pytest.fixture
def listing(fresh):
    if not serves_models(fresh):
        pytest.skip("the simulator does not serve GET /v1/models yet (its branch adds it)")
    fresh.clear_requests()
    return fresh


def test_models_refreshes_from_the_simulator_and_caches(listing, private_cache):
    client = Client(api_key=KEY, base_url=listing.base_url)
    catalogue = client.models()
    assert len(model_gets(listing)) >= 1 and DEFAULT_MODEL in catalogue
    assert catalogue.get(DEFAULT_MODEL).capabilities is not None  # refreshed from the API
    assert catalogue.get(DEFAULT_MODEL).price == lookup(DEFAULT_MODEL).price
    assert stat.S_IMODE(os.stat(private_cache / "models.json").st_mode) == 0o600
    calls = len(model_gets(listing))
    assert client.models() is catalogue  # the process cache
    live.clear_memory()
    assert DEFAULT_MODEL in client.models()  # the disk cache
    assert len(model_gets(listing)) == calls
    client.models(refresh=True)
    assert len(model_gets(listing)) > calls


def test_models_follows_every_page(listing):
    client = Client(api_key=KEY, base_url=listing.base_url)
    everything = live.fetch_sync(client.sdk)
    paged = live.fetch_sync(client.sdk, page_size=2)
    assert [m["id"] for m in paged] == [m["id"] for m in everything] and len(everything) > 2
    assert any(r.query.get("after_id") for r in model_gets(listing))


def test_async_models_from_the_simulator(listing):
    async def main():
        client = convo.AsyncClient(api_key=KEY, base_url=listing.base_url)
        try:
            return await client.models(refresh=True)
        finally:
            await client.close()

    catalogue = asyncio.run(main())
    assert DEFAULT_MODEL in catalogue and model_gets(listing)

"""The strategy protocol: every hook reaches every part of a composite, and strategies save exactly.

Hooks (see convo.strategies.StrategyProtocol): fit (``__call__``), ``plan`` (a fold to
summarize), ``params`` (request fields), ``observe`` (each reply) and ``config`` (saving).
Composites are ``a | b`` (OrElse) and ``ServerEdits(fallback=...)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convo import Conversation, ConversationFileError, InvalidConfigError, SlidingWindow, Strategy, Summarize
from convo.context_edits import BETA, COMPACT_BETA, ServerEdits
from convo.strategies import OrElse, as_strategy, merge_params, strategy_from_config
from convo.summarize import Fold

from .helpers import MODEL, quick_client
from .test_context_edits import tool_history
from .test_strategies import state


def fact(i: int) -> str:
    return f"Fact {i}: river {i} runs through the valley of town {i}. It is {i * 7} km long and full of trout."


def _text(content) -> str:
    """A message's text: its string, or its text blocks (prompt caching, on by default with a
    client, turns the newest message into blocks to mark it)."""
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


def summary_posts(sim) -> list[dict]:
    return [r.body for r in sim.requests if r.path == "/v1/messages"
            and _text(r.body["messages"][-1]["content"]).startswith("Summarize this conversation")]  # fmt: skip


@dataclass
class Recorder(Strategy):
    """A saveable strategy that keeps everything, adds ``metadata`` and records what it saw."""

    user: str = "u-1"
    name: ClassVar[str] = "test_recorder"

    def __post_init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, st_: Any) -> int:
        return 0

    def params(self, model: str) -> dict[str, Any]:
        return {"metadata": {"user_id": self.user}}

    def observe(self, reply: Any) -> None:
        self.seen.append(reply)

    def config(self) -> dict[str, Any]:
        return {"type": self._saved_type(), "user": self.user}

    @classmethod
    def from_config(cls, config: Any) -> Recorder:
        return cls(user=config["user"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recorder) and other.user == self.user


# -- plan: a Summarize inside a composite summarizes -------------------------------------------


@pytest.mark.parametrize("wrap", [
    lambda s: ServerEdits(supported=False, fallback=s),
    lambda s: ServerEdits(supported=False, fallback=SlidingWindow(low_water=0.9) | s),
    lambda s: SlidingWindow() | s,
    lambda s: OrElse((Recorder(), ServerEdits(supported=False, fallback=s))),
], ids=["server_edits", "server_edits_or_else", "or_else", "or_else_server_edits"])
def test_a_summarize_inside_a_composite_summarizes(fresh, wrap):
    strategy = wrap(Summarize(keep_last=2, max_summary_tokens=200))
    with quick_client(fresh) as client:
        conv = Conversation("Be brief.", model=MODEL, budget=2000, max_tokens=200, strategy=strategy, client=client)
        for i in range(16):
            conv.send(fact(i))
    assert conv.summary is not None and conv.summary_error is None
    assert summary_posts(fresh)  # the summarizing calls went to the model
    assert conv.summary.turns >= 1


def test_server_edits_plans_its_fallbacks_fold_on_a_model_without_edits_support():
    edits = ServerEdits(fallback=Summarize(keep_last=1, trigger=0.5))
    old_model = "claude-3-5-haiku-20241022"
    assert not edits.active(old_model)
    s = replace(state([100] * 10, budget=600), model=old_model)
    fold = as_strategy(edits).plan(s)
    assert fold is not None and fold.end == 8 and fold.writer is edits.fallback
    assert fold == edits.fallback.plan(s)  # as a top-level Summarize would


def test_while_the_servers_edits_fit_nothing_is_summarized(fresh):
    edits = ServerEdits(trigger_tokens=1000, fallback=Summarize(keep_last=1, trigger=0.1))
    with quick_client(fresh) as client:
        conv = Conversation(model=MODEL, budget=100_000, strategy=edits, client=client)
        conv.extend(tool_history(8))
        conv.add_assistant("Noted.")
        conv.send("And now?")
        assert conv.summary is None and not summary_posts(fresh)  # the server clears instead
        assert conv.compact(force=True) is True  # asked for, the fallback folds
    assert conv.summary is not None and summary_posts(fresh)


def test_a_fold_names_its_writer_and_a_strategy_without_one_is_refused(fresh):
    s = Summarize(keep_last=0, summarizer=lambda prev, turns: "short")
    assert s.plan(state([100, 100, 100]), force=True).writer is s

    class Planner(Strategy):
        def __call__(self, st_):
            return 0

        def plan(self, st_, *, force=False):
            return Fold(None, tuple(st_.turn(0)), 0, 1)  # no writer

    conv = Conversation(model=MODEL, budget=4000, strategy=Planner(), client=quick_client(fresh))
    conv.add_user("a")
    conv.add_assistant("b")
    conv.add_user("c")
    with pytest.raises(InvalidConfigError, match="writer"):
        conv.compact(force=True)
    assert conv.summary is None


# -- params and observe reach the parts ----------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda r: SlidingWindow() | r,
    lambda r: r | Summarize(),
    lambda r: ServerEdits(supported=False, fallback=r),
    lambda r: SlidingWindow() | ServerEdits(supported=False, fallback=SlidingWindow() | r),
], ids=["or_else_second", "or_else_first", "server_edits_fallback", "nested"])
def test_params_and_observe_reach_the_inner_strategies(fresh, build):
    recorder = Recorder(user="ada")
    with quick_client(fresh) as client:
        conv = Conversation(model=MODEL, budget=4000, strategy=build(recorder), client=client)
        conv.send("Hello")
        assert fresh.requests[-1].body["metadata"] == {"user_id": "ada"}  # params, sent to the API
        conv.send("Again")
    assert len(recorder.seen) == 2  # observe, once per reply
    assert recorder.seen[-1].content[0].text == conv.messages[-1].text


def test_server_edits_as_a_later_part_still_sends_its_edits_and_reads_back(fresh):
    edits = ServerEdits(trigger_tokens=1000)
    with quick_client(fresh) as client:
        conv = Conversation(model=MODEL, budget=100_000, strategy=Recorder() | edits, client=client)
        conv.extend(tool_history(8))
        conv.add_assistant("Noted.")
        conv.send("And now?")
    body = fresh.requests[-1].body
    assert body["context_management"] == {"edits": edits.edits()} and body["metadata"] == {"user_id": "u-1"}
    assert edits.last_applied and edits.last_applied[0].cleared_tool_uses > 0


def test_a_plain_object_with_some_hooks_is_used_as_it_is():
    class Tagger:
        def __init__(self) -> None:
            self.replies: list[Any] = []

        def __call__(self, st_):
            return 0

        def params(self, model):
            return {"temperature": 0.5}

        def observe(self, reply):
            self.replies.append(reply)

    tagger = Tagger()
    composite = SlidingWindow() | tagger
    assert composite.params(MODEL) == {"temperature": 0.5}
    composite.observe("reply")
    assert tagger.replies == ["reply"]
    assert as_strategy(lambda s: 0).params(MODEL) == {} and as_strategy(lambda s: 0).plan(state([1])) is None


def test_a_fork_has_its_own_parts(fresh):
    edits = ServerEdits(trigger_tokens=1000, fallback=SlidingWindow() | Recorder())
    with quick_client(fresh) as client:
        conv = Conversation(model=MODEL, budget=100_000, strategy=Recorder() | edits, client=client)
        conv.extend(tool_history(8))
        conv.add_assistant("Noted.")
        twin = conv.fork()
        twin.send("And now?")
    assert twin.strategy == conv.strategy
    mine, theirs = conv.strategy.strategies[1], twin.strategy.strategies[1]
    assert theirs.last_applied and not mine.last_applied  # the fork's reply is the fork's
    # every part is copied (a custom part's own state is as its __copy__ makes it)
    assert theirs.fallback is not mine.fallback and theirs.fallback.strategies[1] is not mine.fallback.strategies[1]
    assert twin.strategy.strategies[0] is not conv.strategy.strategies[0]


def test_params_merge_nested_fields_and_join_beta_headers():
    compact = ServerEdits(compact=True, fallback=ServerEdits(clear_thinking=True, clear_tool_uses=False))
    params = compact.params(MODEL)
    assert params["extra_headers"]["anthropic-beta"] == f"{BETA},{COMPACT_BETA}"  # joined once, not twice
    assert [e["type"] for e in params["context_management"]["edits"]] == [e["type"] for e in compact.edits()]
    mine = {"extra_headers": {"x-trace": "1"}}
    merged = merge_params(mine, {"extra_headers": {"anthropic-beta": "b1"}})
    assert merged == {"extra_headers": {"x-trace": "1", "anthropic-beta": "b1"}}
    assert mine == {"extra_headers": {"x-trace": "1"}}  # not changed
    assert merge_params({"extra_headers": {"anthropic-beta": "a,b"}}, {"extra_headers": {"anthropic-beta": "b, c"}}) \
        == {"extra_headers": {"anthropic-beta": "a,b,c"}}


def test_the_callers_extra_headers_keep_the_strategys_beta_header():
    edits = ServerEdits()
    conv = Conversation(model=MODEL, budget=100_000, strategy=edits)
    conv.add_user("hi")
    request = conv.request(extra_headers={"x-trace": "42"}, metadata={"user_id": "me"})
    assert request["extra_headers"] == {"x-trace": "42", "anthropic-beta": BETA}
    assert request["context_management"] == {"edits": edits.edits()}


# -- saving: every built-in and every composition, exactly ---------------------------------------------

fractions = st.floats(0.05, 1.0, allow_nan=False)
windows = st.builds(SlidingWindow, low_water=fractions)
summaries = st.builds(
    Summarize, trigger=fractions, keep_last=st.integers(0, 9), max_summary_tokens=st.integers(1, 4000),
    model=st.none() | st.sampled_from(["claude-haiku-4-5", "claude-opus-4-1"]), low_water=fractions,
    max_calls=st.integers(1, 5),
)  # fmt: skip


def server_edits(fallback: st.SearchStrategy[Any]) -> st.SearchStrategy[ServerEdits]:
    return st.builds(
        ServerEdits, clear_tool_uses=st.just(True), clear_thinking=st.booleans(),
        trigger_tokens=st.integers(1, 10**6), keep_tool_uses=st.integers(0, 20),
        clear_at_least=st.none() | st.integers(1, 10**5),
        exclude_tools=st.lists(st.text("abcxyz_", min_size=1, max_size=8), max_size=3).map(tuple),
        clear_tool_inputs=st.booleans(), keep_thinking_turns=st.none() | st.integers(1, 9), compact=st.booleans(),
        compact_trigger_tokens=st.integers(1, 10**6), compact_instructions=st.none() | st.text(max_size=30),
        pause_after_compaction=st.booleans(), supported=st.none() | st.booleans(), fallback=fallback,
    )  # fmt: skip


compositions = st.recursive(
    windows | summaries | st.builds(Recorder, user=st.text(max_size=10)),
    lambda inner: st.lists(inner, min_size=1, max_size=3).map(lambda xs: OrElse(tuple(xs))) | server_edits(inner),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(compositions)
def test_any_composition_round_trips_through_its_config(strategy):
    config = json.loads(json.dumps(strategy.config()))  # as a file holds it
    again = strategy_from_config(config)
    assert again == strategy and type(again) is type(strategy)
    assert again.config() == strategy.config()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strategy=compositions)
def test_any_composition_survives_save_and_load(tmp_path_factory, strategy):
    conv = Conversation("Be brief.", model=MODEL, budget=50_000, strategy=strategy)
    conv.add_user("hello")
    conv.add_assistant("hi")
    path = tmp_path_factory.mktemp("c") / "c.json"
    conv.save(path)
    loaded = Conversation.load(path)
    assert loaded.strategy == strategy and loaded.to_dict() == conv.to_dict()
    loaded.add_user("more")
    conv.add_user("more")
    assert loaded.request() == conv.request()


@pytest.mark.parametrize("strategy", [
    SlidingWindow(), SlidingWindow(low_water=0.5),
    Summarize(), Summarize(trigger=0.6, keep_last=1, max_summary_tokens=77, model="claude-haiku-4-5",
                           low_water=0.7, max_calls=3),
    ServerEdits(), ServerEdits(clear_thinking=True, keep_thinking_turns=None, exclude_tools=("a", "b"),
                               compact=True, compact_instructions="keep names", supported=False,
                               fallback=Summarize(keep_last=3)),
    OrElse((SlidingWindow(low_water=0.6),)), SlidingWindow() | Summarize() | SlidingWindow(low_water=0.3),
    OrElse((SlidingWindow(), OrElse((Summarize(), SlidingWindow())))),
], ids=repr)
def test_each_built_in_round_trips_exactly(tmp_path, strategy):
    conv = Conversation(model=MODEL, budget=9000, strategy=strategy)
    conv.save(tmp_path / "c.json")
    loaded = Conversation.load(tmp_path / "c.json").strategy
    assert loaded == strategy and type(loaded) is type(strategy) and repr(loaded) == repr(strategy)


def test_nesting_is_kept():
    nested = OrElse((SlidingWindow(), OrElse((Summarize(), SlidingWindow()))))
    flat = SlidingWindow() | Summarize() | SlidingWindow()
    assert strategy_from_config(nested.config()) == nested != flat
    assert strategy_from_config(flat.config()) == flat


# -- a strategy that cannot be saved is refused when saving ------------------------------------------


def keep_all(st_):
    return 0


class MyWindow(SlidingWindow):  # no name of its own: saving it as a SlidingWindow would lose it
    pass


@pytest.mark.parametrize("strategy", [
    keep_all,
    lambda st_: 0,
    SlidingWindow() | keep_all,
    ServerEdits(fallback=keep_all),
    ServerEdits(fallback=SlidingWindow() | keep_all),
    Summarize(summarizer=lambda prev, turns: "s"),
    SlidingWindow() | Summarize(summarizer=lambda prev, turns: "s"),
    MyWindow(),
], ids=["function", "lambda", "or_else", "server_edits", "nested", "summarizer", "or_else_summarizer", "subclass"])
def test_an_unsaveable_strategy_is_refused_at_save_and_nothing_is_written(tmp_path, strategy):
    path = tmp_path / "c.json"
    Conversation(model=MODEL, budget=9000).save(path)
    old = path.read_text(encoding="utf-8")
    conv = Conversation(model=MODEL, budget=9000, strategy=strategy)
    conv.add_user("hi")
    with pytest.raises(ConversationFileError, match="cannot be saved") as info:
        conv.save(path)
    assert "strategy=False" in str(info.value) and "strategy=..." in str(info.value)
    assert path.read_text(encoding="utf-8") == old  # the old file is untouched
    with pytest.raises(ConversationFileError):
        conv.to_dict()
    # Saved without it on request, it must be given back at load: never replaced by a default.
    conv.save(path, strategy=False)
    with pytest.raises(ConversationFileError, match=r"without its strategy.*strategy=\.\.\."):
        Conversation.load(path)
    again = Conversation.load(path, strategy=strategy)
    assert again.strategy is strategy and again.messages == conv.messages


def test_a_registered_custom_strategy_round_trips(tmp_path):
    conv = Conversation(model=MODEL, budget=9000, strategy=SlidingWindow() | Recorder(user="x"))
    conv.save(tmp_path / "c.json")
    assert Conversation.load(tmp_path / "c.json").strategy == SlidingWindow() | Recorder(user="x")


@pytest.mark.parametrize("saved", [{"type": "not_a_strategy"}, {"type": "custom"}, {"no": "type"}, "window",
                                   {"type": "or_else", "strategies": "x"}, {"type": "sliding_window", "low_water": 7}])
def test_a_file_with_an_unknown_or_bad_strategy_does_not_load(saved):
    data = Conversation(model=MODEL, budget=9000).to_dict()
    data["strategy"] = saved
    with pytest.raises(ConversationFileError, match="strategy|low_water"):
        Conversation.from_dict(data)
    assert Conversation.from_dict(data, strategy=SlidingWindow()).strategy == SlidingWindow()


def test_a_file_without_a_strategy_gets_the_default():
    data = Conversation(model=MODEL, budget=9000, prompt_cache=True).to_dict()
    del data["strategy"]
    assert Conversation.from_dict(data).strategy == SlidingWindow(low_water=0.6)


@dataclass
class Forgetful(Strategy):
    """Registered, but its config leaves out a setting its from_config needs."""

    size: int = 3
    name: ClassVar[str] = "test_forgetful"

    def __call__(self, st_: Any) -> int:
        return 0

    @classmethod
    def from_config(cls, config: Any) -> Forgetful:
        return cls(size=config["size"])


def test_a_config_that_does_not_rebuild_its_strategy_is_refused_at_save(tmp_path):
    conv = Conversation(model=MODEL, budget=9000, strategy=SlidingWindow() | Forgetful())
    with pytest.raises(ConversationFileError, match="does not rebuild it"):
        conv.save(tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()

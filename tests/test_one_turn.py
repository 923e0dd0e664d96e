"""One conversation object runs one turn at a time. Two turns at once on the same object (an
``asyncio.gather`` of two ``asend``, two threads, a ``send`` from inside a tool, a stream not yet
read to its end) used to interleave their messages: both user turns first, then both replies,
each request seeing the other's half-turn, and a store wrote it so. The second is now refused
with ConversationBusyError before it changes anything, and the first goes on. Against the
simulator over HTTP."""

from __future__ import annotations

import asyncio
import threading

import pytest

import convo
from convo import Conversation, ConversationBusyError, SQLiteConversationStore, check_history
from convo.sim import Simulator
from tests.helpers import MODEL, quick_aclient, quick_client


@pytest.fixture(scope="module")
def slow():
    """A simulator whose replies take 0.3 s, so that two turns overlap."""
    with Simulator(seed=0, latency=0.3) as s:
        yield s


def texts(conv: Conversation) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in conv.messages]


def test_two_async_turns_at_once_on_one_handle_do_not_interleave(slow, tmp_path):
    store = SQLiteConversationStore(tmp_path / "chats.db")

    async def main():
        conv = store.create("Be terse.", model=MODEL, user="ada", client=quick_aclient(slow))
        first, second = await asyncio.gather(conv.asend("one"), conv.asend("two"), return_exceptions=True)
        return conv, first, second

    conv, first, second = asyncio.run(main())
    assert isinstance(first, convo.Reply) and '"one"' in first
    assert isinstance(second, ConversationBusyError)
    assert "conv.asend() was called while a asend() turn is in progress" in str(second)
    assert [r for r, _ in texts(conv)] == ["user", "assistant"] and texts(conv)[0] == ("user", "one")
    assert texts(store.open(conv.id)) == texts(conv)  # the store holds the one turn, whole
    check_history(conv.messages)
    store.close()


def test_two_threads_sending_on_one_conversation_get_one_turn_each_or_a_typed_error(slow):
    slow.clear_requests()
    conv = Conversation("Be terse.", model=MODEL, client=quick_client(slow))
    start = threading.Barrier(4, timeout=10)
    outcomes: list[object] = []

    def worker(i: int) -> None:
        start.wait()
        try:
            outcomes.append(conv.send(f"thread {i}"))
        except ConversationBusyError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    replies = [o for o in outcomes if isinstance(o, convo.Reply)]
    assert len(outcomes) == 4 and len(replies) == 1  # all four started within the first's 0.3 s
    assert [r for r, _ in texts(conv)] == ["user", "assistant"]
    assert texts(conv)[1] == ("assistant", str(replies[0]))
    sent = [[m["content"] for m in r.body["messages"]] for r in slow.requests if r.path == "/v1/messages"]
    assert sent == [[f"thread {i}"] for i in range(4) if f"thread {i}" == texts(conv)[0][1]]  # one request, one turn
    conv.send("and now?")  # free again once the turn ended
    assert len(conv) == 4


def test_a_stream_not_read_to_its_end_holds_the_conversation_until_it_is_closed(slow):
    conv = Conversation("Be terse.", model=MODEL, client=quick_client(slow))
    conv.send("hello")
    before = texts(conv)
    reply = conv.stream("tell me more")
    next(iter(reply))  # the turn is under way
    with pytest.raises(ConversationBusyError, match=r"conv\.send\(\) was called while a stream\(\) turn"):
        conv.send("something else")
    with pytest.raises(ConversationBusyError):
        conv.undo()
    assert texts(conv)[: len(before)] == before and texts(conv)[-1] == ("user", "tell me more")
    reply.close()  # the stream's turn is taken back, and the conversation free
    assert texts(conv) == before
    conv.undo()
    assert texts(conv) == []


def test_a_stream_made_but_not_started_holds_nothing(slow):
    conv = Conversation("Be terse.", model=MODEL, client=quick_client(slow))
    later = conv.stream("later")  # its turn starts at the first read
    conv.send("now")
    assert "".join(later) and [m.text for m in conv.messages if m.role == "user"] == ["now", "later"]


EDITS = {
    "send": lambda conv: conv.send("nested"),
    "add_user": lambda conv: conv.add_user("extra"),
    "add": lambda conv: conv.add({"role": "user", "content": "extra"}),
    "extend": lambda conv: conv.extend([{"role": "user", "content": "extra"}]),
    "undo": lambda conv: conv.undo(),
    "reset": lambda conv: conv.reset(),
    "pin": lambda conv: conv.pin(0),
    "compact": lambda conv: conv.compact(force=True),
    "reload": lambda conv: conv.reload(),
    "flush": lambda conv: conv.flush(),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_tool_that_edits_its_own_conversation_mid_turn_is_refused_and_the_turn_completes(edit, tmp_path):
    store = SQLiteConversationStore(tmp_path / "chats.db")
    with Simulator(seed=0) as sim:
        seen: list[BaseException] = []

        def get_weather(city: str) -> str:
            """The weather in a city."""
            try:
                EDITS[edit](conv)
            except ConversationBusyError as exc:
                seen.append(exc)
            return "sunny"

        conv = store.create("Be terse.", model=MODEL, user="ada", client=quick_client(sim), tools=[get_weather])
        conv.send("hi")
        before = texts(conv)
        reply = conv.send("use get_weather for Paris")
    assert len(seen) == 1 and f"conv.{edit}() was called while a send() turn is in progress" in str(seen[0])
    assert "sunny" in reply and [s.stop_reason for s in reply.steps] == ["tool_use", "end_turn"]
    assert texts(conv)[: len(before)] == before and len(conv) == len(before) + 4  # user, tool call, result, answer
    check_history(conv.messages)
    stored = store.open(conv.id)
    assert texts(stored) == texts(conv)  # the turn is stored whole, nothing of the edit
    store.close()


def test_a_fork_runs_a_turn_of_its_own_while_the_original_is_busy(slow):
    conv = Conversation("Be terse.", model=MODEL, client=quick_client(slow))
    conv.send("hello")
    forks: list[Conversation] = []

    def get_weather(city: str) -> str:
        """The weather in a city."""
        twin = conv.fork()  # a copy of the turn so far (a tool call waiting for its result)
        twin.undo()  # its own history, free to change
        twin.send("a side question")
        forks.append(twin)
        return "sunny"

    conv.tools = [get_weather]
    conv.send("use get_weather for Paris")
    (twin,) = forks
    assert [m.text for m in twin.messages if m.role == "user"] == ["hello", "a side question"]
    assert "a side question" not in [m.text for m in conv.messages]
    twin.send("free")  # the fork was never in the original's turn
    check_history(conv.messages)


def test_a_cancelled_async_turn_frees_the_conversation(slow):
    async def main():
        conv = Conversation("Be terse.", model=MODEL, client=quick_aclient(slow))
        task = asyncio.create_task(conv.asend("first"))
        await asyncio.sleep(0.1)  # the request is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert texts(conv) == []  # taken back
        reply = await conv.asend("second")
        return conv, reply

    conv, reply = asyncio.run(main())
    assert texts(conv) == [("user", "second"), ("assistant", str(reply))]

"""The response cache and the redactor, wired into Client and Conversation (on the simulator)."""

import asyncio
import json

import convo
from convo import AsyncClient, Client, Conversation, MemoryCache, Redactor, RedisCache, SQLiteCache

MODEL = "claude-sonnet-4-6"
ASK = [{"role": "user", "content": "What is the boiling point of water at sea level?"}]
SECRET_EMAIL = "ada.lovelace@example.org"
CARD = "4111 1111 1111 1111"


def posts(sim):
    return [r for r in sim.requests if r.path == "/v1/messages"]


def client(sim, **kw):
    return Client(api_key="k", base_url=sim.base_url, model=MODEL, **kw)


def test_a_hit_sends_nothing(fresh):
    c = client(fresh, cache=MemoryCache())
    first = c.create(ASK, max_tokens=100, temperature=0)
    second = c.create(ASK, max_tokens=100, temperature=0)
    assert second == first and len(posts(fresh)) == 1
    stats = c.stats.as_dict()
    assert (stats["cache_hits"], stats["cache_misses"]) == (1, 1)


def test_sampled_requests_are_not_cached_unless_opted_in(fresh):
    c = client(fresh, cache=MemoryCache())
    c.create(ASK, max_tokens=100)  # temperature absent: the API samples at 1.0
    c.create(ASK, max_tokens=100, temperature=0.7)
    c.create(ASK, max_tokens=100, temperature=0.7)
    assert len(posts(fresh)) == 3
    opted = client(fresh, cache=MemoryCache(), cache_sampling=True)
    opted.create(ASK, max_tokens=100, temperature=0.7)
    opted.create(ASK, max_tokens=100, temperature=0.7)
    assert len(posts(fresh)) == 4


def test_one_users_answer_is_never_served_to_another(fresh):
    cache = MemoryCache()
    alice = client(fresh, cache=cache, user="alice")
    bob = client(fresh, cache=cache, user="bob")
    alice.create(ASK, max_tokens=50, temperature=0)
    bob.create(ASK, max_tokens=50, temperature=0)
    alice.create(ASK, max_tokens=50, temperature=0)
    assert len(posts(fresh)) == 2 and alice.stats.cache_hits == 1 and bob.stats.cache_hits == 0


def test_a_cached_answer_replays_as_a_stream(fresh):
    c = client(fresh, cache=MemoryCache())
    with c.stream(ASK, max_tokens=100, temperature=0) as s:
        live = "".join(s.text_stream)
    with c.stream(ASK, max_tokens=100, temperature=0) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(posts(fresh)) == 1 and len(pieces) > 1
    assert "".join(pieces) == live == final.content[0].text


def test_sqlite_cache_survives_a_new_client(fresh, tmp_path):
    path = tmp_path / "cache.db"
    client(fresh, cache=SQLiteCache(path)).create(ASK, max_tokens=50, temperature=0)
    again = client(fresh, cache=SQLiteCache(path))
    again.create(ASK, max_tokens=50, temperature=0)
    assert len(posts(fresh)) == 1 and again.stats.cache_hits == 1


def test_redis_cache_is_shared_between_clients(fresh, redis_url):
    a = client(fresh, cache=RedisCache(redis_url, ttl=60, prefix="client-test:"))
    b = client(fresh, cache=RedisCache(redis_url, ttl=60, prefix="client-test:"))
    a.create(ASK, max_tokens=50, temperature=0)
    b.create(ASK, max_tokens=50, temperature=0)
    assert len(posts(fresh)) == 1


def test_async_client_uses_the_cache(fresh):
    async def main():
        c = AsyncClient(api_key="k", base_url=fresh.base_url, model=MODEL, cache=MemoryCache())
        a = await c.create(ASK, max_tokens=50, temperature=0)
        b = await c.create(ASK, max_tokens=50, temperature=0)
        await c.close()
        return a, b

    a, b = asyncio.run(main())
    assert a == b and len(posts(fresh)) == 1


def leaked(sim, *secrets):
    text = json.dumps([r.body for r in sim.requests])
    return [s for s in secrets if s in text]


def test_redaction_happens_before_sending_and_replies_are_restored(fresh):
    c = client(fresh, redactor=Redactor(mode="placeholder"))
    question = f"Please write to {SECRET_EMAIL} about card {CARD} today"
    msg = c.create([{"role": "user", "content": question}], max_tokens=200, system=f"Owner: {SECRET_EMAIL}")
    assert leaked(fresh, SECRET_EMAIL, CARD) == []
    sent = posts(fresh)[0].body
    assert "[EMAIL_1]" in sent["messages"][0]["content"] and "[EMAIL_1]" in sent["system"]
    # The offline model quotes the question back: the placeholder comes back restored.
    assert SECRET_EMAIL in msg.content[0].text and "[EMAIL_1]" not in msg.content[0].text


def test_streamed_text_is_restored_even_when_placeholders_split(fresh):
    c = client(fresh, redactor=Redactor(mode="placeholder"))
    question = f"Please write to {SECRET_EMAIL} and to bob@example.com today"
    with c.stream([{"role": "user", "content": question}], max_tokens=200) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    text = "".join(pieces)
    assert SECRET_EMAIL in text and "bob@example.com" in text and "[EMAIL_" not in text
    assert text == final.content[0].text
    assert leaked(fresh, SECRET_EMAIL, "bob@example.com") == []


def test_mask_mode_and_the_cache_never_hold_raw_data(fresh, tmp_path):
    path = tmp_path / "cache.db"
    c = client(fresh, redactor=Redactor(), cache=SQLiteCache(path))
    msg = c.create([{"role": "user", "content": f"My card is {CARD}, thanks"}], max_tokens=100, temperature=0)
    c.cache.close()
    assert "[CARD]" in posts(fresh)[0].body["messages"][0]["content"]
    assert "[CARD]" in msg.content[0].text  # mask mode: nothing to restore
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert CARD.encode() not in stored and b"4111111111111111" not in stored


def test_conversation_redactor(fresh):
    conv = Conversation(model=MODEL, budget=4000, client=client(fresh), redactor=Redactor(mode="placeholder"))
    reply = conv.send(f"Remember my email {SECRET_EMAIL}, please")
    assert leaked(fresh, SECRET_EMAIL) == []
    assert SECRET_EMAIL in reply and conv.messages[0].content.endswith("please")
    streamed = "".join(conv.stream(f"Again: {SECRET_EMAIL}"))
    assert SECRET_EMAIL in streamed and leaked(fresh, SECRET_EMAIL) == []


def test_a_broken_cache_does_not_break_requests(fresh, caplog):
    class Broken:
        def get(self, key):
            raise convo.CacheError("disk full")

        def set(self, key, value, ttl=None):
            raise convo.CacheError("disk full")

    c = client(fresh, cache=Broken())
    assert c.create(ASK, max_tokens=50, temperature=0).content
    assert "response cache unavailable" in caplog.text

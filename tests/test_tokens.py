import base64
import io

import pytest
from PIL import Image

import convo
from convo import CachedCounter, Conversation, OfflineCounter, count_tokens, to_message
from convo._images import image_size, image_tokens
from convo.tokens import MESSAGE_OVERHEAD, REQUEST_OVERHEAD, TOOLS_OVERHEAD

from .helpers import png_block


def test_text_counts_grow_with_text():
    short, long = count_tokens("Hello, Claude"), count_tokens("Hello, Claude. " * 50)
    assert 0 < short < long
    assert count_tokens("") == 0


def test_calibration_factor_applies():
    plain = OfflineCounter(text_factor=1.0, cjk_factor=0.0)
    scaled = OfflineCounter(text_factor=2.0, cjk_factor=0.0)
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert scaled.count_text(text) == pytest.approx(2 * plain.count_text(text), abs=1)


def test_cjk_is_counted_per_character():
    base = OfflineCounter(cjk_factor=0.0)
    more = OfflineCounter(cjk_factor=1.0)
    zh = "今天天气很好，我们去公园散步。"
    cjk_chars = sum(1 for ch in zh)  # every character here is CJK or CJK punctuation
    assert more.count_text(zh) - base.count_text(zh) == pytest.approx(cjk_chars, abs=1)
    english = "No CJK characters at all here."
    assert more.count_text(english) == base.count_text(english)


def test_request_counts_messages_system_and_overheads():
    c = OfflineCounter()
    msgs = [to_message({"role": "user", "content": "Hello there"})]
    bare = c.count_request(msgs)
    assert bare == REQUEST_OVERHEAD + MESSAGE_OVERHEAD + c.count_text("Hello there")
    with_system = c.count_request(msgs, system="You are a pirate.")
    assert with_system == bare + MESSAGE_OVERHEAD + c.count_text("You are a pirate.")
    assert count_tokens([{"role": "user", "content": "Hello there"}]) == bare


def test_tools_and_tool_blocks_are_counted():
    c = OfflineCounter()
    tool = {"name": "get_weather", "description": "Weather for a city", "input_schema": {"type": "object"}}
    msgs = [to_message({"role": "user", "content": "Weather?"})]
    assert c.count_request(msgs, tools=[tool]) - c.count_request(msgs) > TOOLS_OVERHEAD
    small = to_message({"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]})
    big = to_message(
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "word " * 200}}]}
    )
    assert c.count_message(big) > c.count_message(small) + 150
    result = to_message(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "answer " * 100}]}
    )
    assert c.count_message(result) > 100


@pytest.mark.parametrize(
    "w, h, expected",
    [(200, 200, 54), (1000, 1000, 1334), (1092, 1092, 1590), (3000, 3000, 1600), (4000, 100, 82)],
)
def test_image_formula(w, h, expected):
    # tokens = width * height / 750 after scaling the long edge to <= 1568 px, capped at ~1600.
    assert image_tokens(w, h) == expected


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_image_sizes_are_read_from_real_files(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (321, 123), "white").save(buf, format=fmt)
    assert image_size(buf.getvalue()) == (321, 123)


def test_image_blocks_use_the_pixel_formula():
    c = OfflineCounter()
    msg = to_message({"role": "user", "content": [png_block(300, 150)]})
    assert c.count_message(msg) == MESSAGE_OVERHEAD + image_tokens(300, 150)
    url = to_message({"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]})
    assert c.count_message(url) == MESSAGE_OVERHEAD + 1600


def test_pdf_pages_and_text_documents():
    c = OfflineCounter()
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Pages >> endobj\n" + b"2 0 obj << /Type /Page >> endobj\n" * 3
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(pdf).decode()}}
    assert c.count_message(to_message({"role": "user", "content": [doc]})) == MESSAGE_OVERHEAD + 3 * 3000
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "word " * 100}}
    assert c.count_message(to_message({"role": "user", "content": [text_doc]})) >= 100


class CountingCounter(OfflineCounter):
    """An offline counter that records which texts it tokenized."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def count_message(self, message):
        self.calls += 1
        return super().count_message(message)


def test_cached_counter_never_recounts_a_message():
    inner = CountingCounter()
    cached = CachedCounter(inner)
    msg = to_message({"role": "user", "content": "repeat me"})
    same = to_message({"role": "user", "content": "repeat me"})
    assert cached.count_message(msg) == cached.count_message(msg) == cached.count_message(same)
    assert inner.calls == 1 and cached.hits == 2


def test_appending_counts_only_the_new_message():
    counter = CountingCounter()
    conv = Conversation("sys", model="m", budget=100_000, counter=counter)
    for i in range(50):
        conv.add_user(f"question {i}")
        conv.add_assistant(f"answer {i}")
    before = counter.calls
    conv.add_user("one more")
    conv.request()
    _ = conv.tokens
    assert counter.calls == before + 1


def test_counter_protocol():
    assert isinstance(OfflineCounter(), convo.TokenCounter)
    assert isinstance(CachedCounter(), convo.TokenCounter)


def test_bad_factor_is_rejected():
    with pytest.raises(convo.InvalidConfigError):
        OfflineCounter(text_factor=0)


def test_every_block_type_is_counted():
    from convo import to_message
    from convo.tokens import OfflineCounter

    counter = OfflineCounter()
    words = "Oslo is cold and dark in the winter months. " * 20
    search = {"type": "search_result", "source": "https://kb.example/1", "title": "Oslo",
              "content": [{"type": "text", "text": words}]}  # fmt: skip
    server = [
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "Oslo"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
         "content": [{"type": "web_search_result", "url": "https://x.example", "title": "Oslo", "encrypted_content": words}]},
    ]  # fmt: skip
    unknown = {"type": "hologram", "data": words}
    base = counter.count_text(words)
    assert counter.count_message(to_message({"role": "user", "content": [search]})) >= base
    assert counter.count_message(to_message({"role": "assistant", "content": server})) >= base
    assert counter.count_message(to_message({"role": "user", "content": [unknown]})) >= base

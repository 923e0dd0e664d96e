"""The simulator's own tokenizer: deterministic, per language, per catalogue label, and not
convo's estimate."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from convo.sim import Tokenizer
from convo.sim.tokens import IMAGE_MAX_TOKENS, image_size, image_tokens

from .helpers import png_bytes

tok = Tokenizer()
EN = "The quick brown fox jumps over the lazy dog while the farmer watches from the porch. " * 8
ZH = "手机电池用久了容量会慢慢下降，这是锂离子电池的正常老化现象，并不是手机出了故障。" * 4


def test_short_words_are_one_token_long_words_split():
    assert tok.count_text("cat") == 1 and tok.count_text(" cat") == 1
    assert tok.count_text("internationalization") > tok.count_text("nation") == 1
    assert tok.count_text("the cat sat") == 3


def test_digits_go_in_groups_of_three():
    assert tok.count_text("7") == tok.count_text("123") == 1
    assert tok.count_text("1234") == 2 and tok.count_text("123456789") == 3


def test_han_characters_cost_one_or_two_tokens_each():
    chars = [c for c in dict.fromkeys(ZH) if "\u4e00" <= c <= "\u9fff"]
    costs = [tok.count_text(c) for c in chars]
    assert set(costs) <= {1, 2} and 2 in costs and 1 in costs
    assert 1.0 < sum(costs) / len(costs) < 1.6


def test_the_claude_5_label_is_finer_on_english_not_on_chinese():
    en, zh = tok.count_text(EN), tok.count_text(ZH)
    assert 1.3 < tok.count_text(EN, "claude-5") / en < 1.5
    assert tok.count_text(ZH, "claude-5") == zh
    assert tok.count_text(EN, "no-such-label") == en


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_counts_are_deterministic_and_roughly_additive(a, b):
    assert tok.count_text(a) == tok.count_text(a) >= (1 if a.strip() else 0)
    joined = tok.count_text(a + b)
    assert joined <= tok.count_text(a) + tok.count_text(b) + 1


def test_numerals_capitals_and_contractions_stay_additive():
    found = (("¼", "²¹¹"), ("AAAAAa", "AAAAAAa"), ("A'aa", "aaa'a"), (":", "、\uff00"), ("----", "----:"))
    for a, b in found:  # once found by hypothesis
        assert tok.count_text(a + b) <= tok.count_text(a) + tok.count_text(b) + 1, (a, b)
    assert tok.count_text("Constitution") > tok.count_text("constitution")  # a capital costs a letter more
    assert tok.count_text("don't") == tok.count_text("don") + 1


def test_a_counter_with_count_text_counts_the_simulators_text():
    """``Simulator(counter=...)`` takes a convo counter: its count_text counts the text, the
    simulator's framing and block costs stay."""
    import anthropic
    import pytest

    from convo.sim import SimConfigError, Simulator, TextTokenizer
    from convo.sim.tokens import as_tokenizer

    class Doubled:
        def count_text(self, text: str) -> int:
            return 2 * tok.count_text(text)

    wrapped = as_tokenizer(Doubled())
    assert isinstance(wrapped, TextTokenizer) and wrapped.count_text(EN) == 2 * tok.count_text(EN)
    assert as_tokenizer(None).count_text(EN) == tok.count_text(EN) and as_tokenizer(tok) is tok
    with pytest.raises(SimConfigError, match="count_text"):
        as_tokenizer(object())
    hi = [{"role": "user", "content": EN}]
    counts = []
    for counter in (None, Doubled()):
        with Simulator(counter=counter) as s, anthropic.Anthropic(base_url=s.base_url, api_key="t") as c:
            counts.append(c.messages.count_tokens(model="claude-haiku-4-5", messages=hi).input_tokens)
    assert counts[1] - counts[0] == tok.count_text(EN)  # only the text doubled


def test_image_tokens_follow_the_vision_formula():
    for w, h in ((200, 200), (400, 300)):
        src = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png_bytes(w, h)).decode()}
        assert image_tokens(src) == -(-w * h // 750)
    big = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png_bytes(3000, 2000)).decode()}
    assert image_tokens(big) == IMAGE_MAX_TOKENS
    assert image_tokens({"type": "url", "url": "https://example.com/x.png"}) == IMAGE_MAX_TOKENS
    assert image_size(png_bytes(17, 9)) == (17, 9)

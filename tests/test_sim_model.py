"""The offline model on its own: no server, no network."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from convo.sim import OfflineModel, Tokenizer
from convo.sim.model import is_cjk, split_deltas, split_sentences

model = OfflineModel(seed=0)


def ask(text: str, **kw):
    kw.setdefault("max_tokens", 500)
    return model.reply([{"role": "user", "content": text}], **kw)


def test_cjk_detection():
    assert is_cjk("今天天气很好，我们去公园散步吧。")
    assert is_cjk("请总结 this 文章的主要内容和观点")
    assert not is_cjk("Hello, world. Café au lait.")


def test_sentences_split_in_both_languages():
    assert split_sentences("One. Two? Three!\nFour") == ["One.", "Two?", "Three!", "Four"]
    assert split_sentences("第一句。第二句！第三句？") == ["第一句。", "第二句！", "第三句？"]
    assert split_sentences("Pi is 3.14 exactly. Next.") == ["Pi is 3.14 exactly.", "Next."]


def test_chinese_keywords_trigger_a_summary():
    text = "北京是中国的首都。北京有很多名胜古迹，比如故宫和长城。上海是中国最大的城市。北京的冬天很冷。"
    for cue in ("总结", "摘要", "概括", "分析"):
        reply = ask(f"请{cue}：{text}")
        assert reply.text.startswith("摘要：") and "北京" in reply.text


def test_english_keywords_trigger_a_summary():
    text = "Cats sleep a lot. Cats hunt mice at night. Dogs bark at cats. The weather was nice. Cats purr."
    for cue in ("Summarize", "Give me a summary of", "Analyze", "TL;DR:", "Summarise"):
        assert ask(f"{cue} {text}").text.startswith("Summary: ")


def test_acknowledgement_mentions_key_words_and_is_deterministic():
    a = ask("Can you recommend some hiking trails near Denver for beginners?")
    assert "hiking" in a.text and "Denver" in a.text
    assert a == ask("Can you recommend some hiking trails near Denver for beginners?")
    assert OfflineModel(seed=0).compose([{"role": "user", "content": "hi there friend"}]) == (
        OfflineModel(seed=0).compose([{"role": "user", "content": "hi there friend"}])
    )


def test_chinese_acknowledgement_is_chinese():
    reply = ask("你好，我想了解一下北京的天气和交通情况。")
    assert is_cjk(reply.text) and "北京" in reply.text


def test_max_tokens_and_stop_sequences():
    full = ask("Tell me about the history of the printing press in Europe.")
    assert full.stop_reason == "end_turn"
    cut = ask("Tell me about the history of the printing press in Europe.", max_tokens=7)
    assert cut.stop_reason == "max_tokens" and cut.output_tokens <= 7 and full.text.startswith(cut.text)
    stopped = ask("Tell me about the history of the printing press in Europe.", stop_sequences=["printing"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "printing"
    assert stopped.text == full.text[: full.text.index("printing")]


def test_tiny_max_tokens_still_reports_one_output_token():
    reply = ask("Tell me something.", max_tokens=1)
    assert reply.stop_reason == "max_tokens" and reply.output_tokens == 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_deltas_concatenate_to_the_text(text):
    assert "".join(split_deltas(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=400), st.integers(min_value=1, max_value=200))
def test_finish_never_exceeds_max_tokens(text, max_tokens):
    reply = model.finish(text, max_tokens=max_tokens)
    assert text.startswith(reply.text)
    assert "".join(reply.deltas) == reply.text
    assert reply.output_tokens == max(1, Tokenizer().count_text(reply.text))
    assert reply.output_tokens <= max_tokens
    if reply.stop_reason == "end_turn":
        assert reply.text == text


def test_a_prefill_is_continued_seamlessly():
    question = [{"role": "user", "content": "Tell me about the weather today in the city of Oslo"}]
    full = model.reply(question, max_tokens=500).text
    for cut in (1, 11, 30, len(full) - 1):
        prefill = full[:cut].rstrip()
        rest = model.reply([*question, {"role": "assistant", "content": prefill}], max_tokens=500)
        assert prefill + rest.text == full

"""The offline model's summaries and chat memory: through the official SDK against the simulator,
and through convo's public API (map_reduce, Conversation with Summarize)."""

from __future__ import annotations

import re

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convo import Client, Conversation, Summarize
from convo.chunking import chunk_text
from convo.mapreduce import map_reduce
from convo.sim import OfflineModel, Tokenizer
from convo.sim.text import split_sentences

MODEL = "claude-sonnet-4-6"
_NORMAL = re.compile(r"[\W_]+")


def normal(text: str) -> str:
    return _NORMAL.sub(" ", text.lower()).strip()


def body(summary: str) -> list[str]:
    """The summary's sentences, its heading removed."""
    text = re.sub(r"^(?:Summary:|摘要：)\s*", "", summary.strip())
    return split_sentences(text.replace("\n\n", "\n"))


@pytest.fixture(scope="module")
def sdk(sim):
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def ask(sdk, content: str, max_tokens: int = 400) -> tuple[str, int]:
    msg = sdk.messages.create(model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": content}])
    return "".join(b.text for b in msg.content if b.type == "text"), msg.usage.output_tokens


def topic(name: str, subject: str, n: int = 6) -> str:
    lines = [f"# {name}", ""]
    for i in range(n):
        lines.append(f"The {subject} has property number {i} that matters for {subject} users in case {i}.")
    return "\n".join(lines)


DOC = "\n\n".join(
    topic(name, subject)
    for name, subject in [("Rivers", "river"), ("Mountains", "mountain"), ("Forests", "forest"), ("Deserts", "desert"),
                          ("Oceans", "ocean"), ("Glaciers", "glacier")]
) + "\n\nSupport: https://example.org/support\n\n    x = compute(river, mountain)\n    print(x)\n"  # fmt: skip


# -- 1. coverage, prose over code and boilerplate, no repeats, order, max_tokens -------------------------


def test_a_summary_draws_from_every_section_in_order_within_max_tokens(sdk):
    text, used = ask(sdk, "Summarize this document:\n\n" + DOC, max_tokens=300)
    assert text.startswith("Summary: ") and used <= 300
    said = body(text)
    for subject in ("river", "mountain", "forest", "desert", "ocean", "glacier"):
        assert any(f"The {subject} " in s for s in said), (subject, text)
    positions = [DOC.index(s) for s in said]  # verbatim, in the text's order
    assert positions == sorted(positions)
    assert "https://" not in text and "Support:" not in text and "compute(" not in text


def test_boilerplate_repeated_through_a_text_is_never_repeated_in_its_summary(sdk):
    doc = "\n\n".join(
        f"Paragraph {i} explains how the {w} service handles {w} requests from clients.\n"
        f"Support: https://www.debian.org/support"
        for i, w in enumerate(["mail", "web", "file", "print", "time", "name"])
    )
    text, _ = ask(sdk, "Summarize:\n\n" + doc)
    keys = [normal(s) for s in body(text)]
    assert len(keys) == len(set(keys)) >= 3
    assert "debian.org" not in text


def test_map_reduce_final_summary_spans_the_whole_document(sim):
    client = Client(api_key="test", base_url=sim.base_url, model=MODEL)
    doc = "\n\n".join(topic(f"Part {k}", f"topic{k} item", 12) for k in range(12))
    chunks = chunk_text(doc, max_tokens=300)
    assert len(chunks) >= 6
    result = map_reduce(chunks, "Summarize this part of the document.", client=client, progress=False, max_tokens=250)
    assert result.ok and Tokenizer().count_text(result.text) <= 250
    said = body(result.text)
    seen = {k for k in range(12) for s in said if f"topic{k} item" in s}
    assert len(seen) >= 9, result.text  # from the start to the end, not the first parts only
    assert min(seen) <= 1 and max(seen) >= 10
    keys = [normal(s) for s in said]
    assert len(keys) == len(set(keys))
    assert "answer part" not in result.text and "Summary: Summary" not in result.text


def test_the_combining_request_merges_partial_summaries(sdk):
    parts = [f"Summary: The {w} team ships {w} features every week. The {w} backlog is long." for w in
             ("search", "billing", "mobile", "design")]  # fmt: skip
    answers = "\n\n".join(f'<answer part="{k + 1}">\n{t}\n</answer>' for k, t in enumerate(parts))
    text, _ = ask(sdk, f"{answers}\n\nCombine them into one answer.\n\nThe task: Summarize this part.", 120)
    assert text.count("Summary:") == 1 and "<answer" not in text
    for w in ("search", "billing", "mobile", "design"):
        assert f"The {w} team" in text or f"The {w} backlog" in text


# -- 2. language -----------------------------------------------------------------------------------------

ZH_DOC = """# 安装

在系统上安装软件之前，应当先更新软件源列表。更新之后，系统会知道每个软件包的最新版本！
Support: https://www.debian.org/support

    sudo apt-get install nginx

# 配置

防火墙默认拒绝所有外部连接；只有明确放行的端口才能访问。修改规则之后要重新加载防火墙……
Support: https://www.debian.org/support

```
ufw allow 80/tcp
```

# 排错

服务出错时，首先应该查看系统日志，那里记录了失败的原因。日志文件会定期轮换，旧的日志会被压缩保存？
"""


def test_a_chinese_instruction_gets_a_chinese_punctuated_summary_without_code(sdk):
    text, used = ask(sdk, "请总结以下文章：\n\n" + ZH_DOC, max_tokens=120)
    assert text.startswith("摘要：") and used <= 120
    said = body(text)
    assert len(said) >= 3
    source = {normal(s) for s in split_sentences(ZH_DOC)}
    for s in said:
        assert s.endswith(("。", "！", "？", "；", "…")), s
        assert normal(s) in source, s  # a whole sentence of the text: no word cut in half
        assert re.search("[\u4e00-\u9fff]", s)
    assert not re.search(r"apt-get|ufw|https?://|Support", text)


def test_the_instruction_language_picks_the_heading():
    model = OfflineModel(seed=0)
    english = "The river is long. The river is wide. The river is deep and very cold in winter."
    zh = model.reply([{"role": "user", "content": "请总结以下文章：\n" + english}], max_tokens=200).text
    en = model.reply([{"role": "user", "content": "Summarize:\n" + ZH_DOC}], max_tokens=200).text
    assert zh.startswith("摘要：") and en.startswith("Summary: ")


def test_chinese_sentences_split_on_their_marks():
    assert split_sentences("第一句。第二句！第三句？第四句；第五句……“第六句。”") == [
        "第一句。", "第二句！", "第三句？", "第四句；", "第五句……", "“第六句。”",
    ]  # fmt: skip
    assert split_sentences("See e.g. the docs. Dr. Smith agreed.") == ["See e.g. the docs.", "Dr. Smith agreed."]


# -- properties -----------------------------------------------------------------------------------------

_LATIN = st.sampled_from(["river", "mountain", "forest", "glacier", "ocean", "desert", "city", "road", "bridge", "tower"])
_HAN = st.sampled_from(list("河山森林冰川海洋沙漠城市道路桥塔"))


@st.composite
def documents(draw: st.DrawFn) -> str:
    paragraphs = []
    for _ in range(draw(st.integers(1, 5))):
        sentences = []
        for _ in range(draw(st.integers(1, 6))):
            if draw(st.booleans()):
                words = draw(st.lists(_LATIN, min_size=3, max_size=12))
                sentences.append(" ".join(words).capitalize() + draw(st.sampled_from([".", "!", "?"])))
            else:
                chars = draw(st.lists(_HAN, min_size=3, max_size=15))
                sentences.append("".join(chars) + draw(st.sampled_from(["。", "！", "？", "；"])))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


@settings(max_examples=80, deadline=None)
@given(documents(), st.integers(min_value=20, max_value=400), st.booleans())
def test_summaries_never_repeat_never_cut_and_fit(doc, max_tokens, chinese):
    model = OfflineModel(seed=0)
    instruction = "请总结以下文章：" if chinese else "Summarize this text:"
    reply = model.reply([{"role": "user", "content": f"{instruction}\n\n{doc}"}], max_tokens=max_tokens)
    assert reply.output_tokens <= max_tokens and reply.stop_reason == "end_turn"
    said = body(reply.text)
    keys = [normal(s) for s in said]
    assert len(keys) == len(set(keys))
    source = {normal(s) for s in split_sentences(doc)}
    for s in said:
        assert normal(s) in source  # whole sentences only: nothing cut inside a word or character run


# -- 3. rolling summaries --------------------------------------------------------------------------------

TRIP = [
    "Hi! I'm Ada, and I'm planning a two-week trip to Japan in April with my partner Grace.",
    "We land in Tokyo on April 3rd and fly home from Osaka on April 17th.",
    "Our budget is about $2,000 for both of us, flights already paid.",
    "Grace is vegetarian, and I can't eat shellfish, so restaurants matter.",
    "We love hiking and old temples; big theme parks not so much.",
]
FACTS = ["Ada", "Grace", "Japan", "Tokyo", "April 3rd", "April 17th", "$2,000", "vegetarian", "shellfish", "hiking"]
FILLER = ["Can you give me a few general tips?", "What else should I keep in mind?", "Any other ideas?", "And then?"]


def trip(sim, limit: int = 200) -> Conversation:
    client = Client(api_key="test", base_url=sim.base_url, model=MODEL)
    conv = Conversation("You are a helpful travel planner.", model=MODEL, budget=1200, max_tokens=200,
                        strategy=Summarize(max_summary_tokens=limit, keep_last=2), client=client)  # fmt: skip
    for text in TRIP:
        conv.send(text)
    k = 0
    while conv.summary is None or conv.summary.turns < len(TRIP):
        conv.send(FILLER[k % len(FILLER)])
        k += 1
        assert k < 30
    return conv


def test_a_rolling_summary_keeps_names_numbers_dates_and_preferences(fresh):
    conv = trip(fresh)
    summary = conv.summary.text
    assert Tokenizer().count_text(summary) <= 200
    kept = [f for f in FACTS if f in summary]
    assert len(kept) >= 0.9 * len(FACTS), summary
    assert "The user's name is Ada." in summary and "Grace is vegetarian." in summary
    assert "The user can't eat shellfish." in summary
    assert "tips" not in summary  # a question that states nothing is not a fact
    keys = [normal(s) for s in split_sentences(summary)]
    assert len(keys) == len(set(keys))


def test_a_rolling_summary_fits_a_small_limit_keeping_the_most_important(sim):
    model = OfflineModel(seed=0)
    turns = "\n\n".join(f"User: {t}\n\nAssistant: Noted." for t in TRIP)
    request = f"Summarize this conversation so the summary can replace the turns below.\n\nNew turns:\n{turns}"
    full = model.reply([{"role": "user", "content": request}], max_tokens=400).text
    small = model.reply([{"role": "user", "content": request}], max_tokens=30)
    assert small.stop_reason == "end_turn" and small.output_tokens <= 30
    assert small.text.startswith("The user's name is Ada.") and len(small.text) < len(full)


def test_a_newer_fact_replaces_the_older_one_in_the_rolling_summary():
    model = OfflineModel(seed=0)
    request = ("Summarize this conversation so the summary can replace the turns below.\n\nSummary so far:\n"
               "The user's name is Ada. Their budget is $500.\n\nNew turns:\nUser: Our budget is now $900.")  # fmt: skip
    text = model.reply([{"role": "user", "content": request}], max_tokens=100).text
    assert "$900" in text and "$500" not in text and "The user's name is Ada." in text


def test_a_chinese_rolling_summary_is_chinese():
    model = OfflineModel(seed=0)
    turns = "User: 你好，我叫李明，住在上海。\n\nAssistant: 好的。\n\nUser: 我的预算是五千元。\n\nUser: 我喜欢爬山。"
    request = f"Summarize this conversation so the summary can replace the turns below.\n\nNew turns:\n{turns}"
    text = model.reply([{"role": "user", "content": request}], max_tokens=100).text
    assert "用户的名字是李明。" in text and "五千元" in text and "爬山" in text and "上海" in text


# -- 4. chat replies draw on the conversation ------------------------------------------------------------


def test_what_is_my_name_is_answered_from_the_history(sdk):
    history = [
        {"role": "user", "content": "Hello, my name is Ada and I study graph theory."},
        {"role": "assistant", "content": "Nice to meet you."},
        {"role": "user", "content": "What is my name?"},
    ]
    msg = sdk.messages.create(model=MODEL, max_tokens=100, messages=history)
    assert msg.content[0].text.startswith("Your name is Ada.")
    again = sdk.messages.create(model=MODEL, max_tokens=100, messages=history)
    assert again.content[0].text == msg.content[0].text  # deterministic


def test_after_summarizing_the_name_is_still_known(fresh):
    conv = trip(fresh)
    assert "Ada" not in " ".join(m.text for m in conv.messages[2 * conv.summary.turns :])
    assert str(conv.send("What is my name?")).startswith("Your name is Ada.")
    assert str(conv.send("Who is my partner?")).startswith("Your partner is Grace.")


def test_an_ordinary_turn_mentions_what_it_relates_to():
    model = OfflineModel(seed=0)
    history = [
        {"role": "user", "content": "I can't eat shellfish."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Suggest a restaurant in Osaka that serves no shellfish."},
    ]
    text = model.compose(history)
    assert "you can't eat shellfish" in text and text == OfflineModel(seed=0).compose(history)
    assert "Your name" not in model.compose([{"role": "user", "content": "What is my name?"}])


def test_chinese_name_question_is_answered_in_chinese():
    model = OfflineModel(seed=0)
    history = [
        {"role": "user", "content": "你好，我叫李明。"},
        {"role": "assistant", "content": "你好。"},
        {"role": "user", "content": "我叫什么名字？"},
    ]
    assert model.compose(history).startswith("你的名字是李明。")


def test_a_short_text_gets_a_shorter_summary_and_the_text_after_the_colon_counts():
    model = OfflineModel(seed=0)
    text = "今天天气很好。我们去公园散步吧！公园里有很多人在跑步。晚上我们吃了火锅。"
    reply = model.reply([{"role": "user", "content": "总结一下：" + text}], max_tokens=200).text
    said = body(reply)
    assert reply.startswith("摘要：") and 1 <= len(said) < 4
    assert all(s in text for s in said)

"""How well the offline model summarizes: section coverage, fact recall, Chinese output, repeats.

Everything runs against the embedded simulator over HTTP, through convo's public API (which
sends with the official anthropic SDK):

- **Coverage of the demo's summary.** ``samples/python-docs.txt`` is map-reduced as
  ``convo summarize --sim`` does it (``chunk_text`` at 2,000 tokens, the CLI's instruction,
  ``max_tokens=1024``). A *topic* is a distinct heading of the sample (``# ...``) with prose under
  it (a sentence of five words or more); a topic is covered when a sentence of the summary is
  found, normalized, in its text. Target: >= 40% of the topics.
- **Fact recall of rolling summaries.** Scripted chats (English and Chinese) run through a real
  ``Conversation`` with ``Summarize`` until turns are folded; every fact stated in a folded turn
  is looked for in the summary (a few words per fact, case-insensitive), and the summary must fit
  ``max_summary_tokens``. Target: >= 90% of the facts.
- **Chinese.** A Chinese instruction (请总结以下文章) on a Chinese text with code samples and a
  repeated ``Support:`` line, asked directly and map-reduced: the answer must be headed in
  Chinese, every sentence must end in a mark and be a whole sentence of the text (no broken
  word), and no code line, URL or repeat may appear.
- **Repeated sentences** in every summary above (normalized): must be 0.

Run: ``.venv/bin/python bench/offline_quality.py`` (about ten seconds). Writes
``bench/results/offline_quality.md``.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import _machine

from convo import Client, Conversation, Summarize
from convo.chunking import chunk_text
from convo.cli.document import INSTRUCTION
from convo.mapreduce import map_reduce
from convo.sim import Simulator, Tokenizer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "python-docs.txt"
RESULTS = Path(__file__).parent / "results" / "offline_quality.md"
MODEL = "claude-sonnet-4-6"
_NORMAL = re.compile(r"[\W_]+")


def normal(text: str) -> str:
    return _NORMAL.sub(" ", text.lower()).strip()


def sentences(summary: str) -> list[str]:
    """A summary's sentences (its heading removed), Latin and CJK."""
    body = re.sub(r"^(?:Summary:|摘要：)\s*", "", summary.strip())
    parts = re.split(r"(?:(?<=[.!?])|(?<=[.!?][)\"'”’]))\s+(?=[A-Z\"“'(*0-9])|(?<=[。！？；…])|\n+", body)
    return [p.strip() for p in parts if p and p.strip()]


def repeats(summary: str) -> int:
    counts = Counter(normal(s) for s in sentences(summary))
    return sum(n - 1 for k, n in counts.items() if k)


# -- coverage --------------------------------------------------------------------------------------


def topics(text: str) -> dict[str, str]:
    """Heading -> the normalized text under it (headings that repeat are one topic)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.split("\n"):
        if line.startswith("# "):
            current = line[2:].strip()
            out.setdefault(current, [])
        elif current is not None and line.strip():
            out[current].append(line.strip().lstrip("*-• ").strip())
    prose = {h: " ".join(lines) for h, lines in out.items()}
    return {h: normal(body) for h, body in prose.items() if any(len(s.split()) >= 5 for s in re.split(r"[.!?]", body))}


def coverage(client: Client) -> dict[str, Any]:
    text = SAMPLE.read_text(encoding="utf-8")
    chunks = chunk_text(text, max_tokens=2000)
    result = map_reduce(chunks, INSTRUCTION, client=client, concurrency=5, progress=False, max_tokens=1024)
    summary = result.text
    found = topics(text)
    said = [normal(s) for s in sentences(summary)]
    covered = {h for h, body in found.items() if any(s and s in body for s in said)}
    verbatim = sum(1 for s in said if s and s in normal(text))
    return {
        "summary": summary, "chunks": len(chunks), "topics": len(found), "covered": len(covered),
        "share": len(covered) / len(found), "tokens": Tokenizer().count_text(summary), "sentences": len(said),
        "verbatim": verbatim, "repeats": repeats(summary),
    }  # fmt: skip


# -- fact recall -----------------------------------------------------------------------------------

#: (name, messages, {message index: facts stated in it}, filler question)
CHATS: list[tuple[str, list[str], dict[int, list[str]]]] = [
    (
        "trip (the chatbot notebook)",
        [
            "Hi! I'm Ada, and I'm planning a two-week trip to Japan in April with my partner Grace.",
            "We land in Tokyo on April 3rd and fly home from Osaka on April 17th.",
            "Our budget is about 6,000 euros for both of us, flights already paid.",
            "Grace is vegetarian, and I can't eat shellfish, so restaurants matter.",
            "We love hiking, old temples and small museums; big theme parks not so much.",
        ],
        {0: ["Ada", "Grace", "Japan"], 1: ["Tokyo", "April 3rd", "Osaka", "April 17th"], 2: ["6,000 euros"],
         3: ["vegetarian", "shellfish"], 4: ["hiking", "temples", "museums"]},
    ),
    (
        "bakery",
        [
            "Hello, my name is Sam Okafor and I run a small bakery in Leeds.",
            "We open at 7am from Tuesday to Saturday and close on Mondays.",
            "My budget for the new oven is $2,000, no more.",
            "I prefer gas ovens because our electricity bill is already high.",
            "My colleague Priya does the accounts every Friday.",
            "We decided to hire two more bakers in March.",
        ],
        {0: ["Sam Okafor", "bakery", "Leeds"], 1: ["7am", "Mondays"], 2: ["$2,000"], 3: ["gas ovens"],
         4: ["Priya", "Friday"], 5: ["two more bakers", "March"]},
    ),
    (
        "project",
        [
            "I'm Lena, the tech lead on the billing service.",
            "The release deadline is Friday, June 12th.",
            "We use Python 3.12 and PostgreSQL 16 in production.",
            "Every API call must answer within 200 ms.",
            "I prefer pytest over unittest for the new tests.",
            "Let's call the new service Falcon.",
        ],
        {0: ["Lena", "billing"], 1: ["June 12th"], 2: ["3.12", "PostgreSQL 16"], 3: ["200 ms"], 4: ["pytest"],
         5: ["Falcon"]},
    ),
    (
        "Chinese",
        [
            "你好，我叫李明，住在上海。",
            "我的预算是五千元，不能再多了。",
            "我是素食者，也不喝酒。",
            "我们打算3月15日去杭州玩三天。",
            "我喜欢爬山和喝茶。",
        ],
        {0: ["李明", "上海"], 1: ["五千元"], 2: ["素食"], 3: ["3月15日", "杭州"], 4: ["爬山", "喝茶"]},
    ),
]
FILLER = [
    "Can you give me a few general tips?",
    "What else should I keep in mind?",
    "Could you say a bit more about that?",
    "Any other ideas?",
    "Thanks, what would you suggest next?",
    "How would you approach the first step?",
    "And after that?",
    "Is there anything I am forgetting?",
]
ZH_FILLER = ["能给我一些建议吗？", "还有什么要注意的？", "可以再详细说说吗？", "还有别的想法吗？", "下一步怎么做？", "然后呢？"]


def recall(client: Client, name: str, messages: list[str], facts: dict[int, list[str]]) -> dict[str, Any]:
    limit = 200
    conv = Conversation("You are a helpful assistant.", model=MODEL, budget=1200, max_tokens=200,
                        strategy=Summarize(max_summary_tokens=limit, keep_last=2), client=client)  # fmt: skip
    filler = ZH_FILLER if name == "Chinese" else FILLER
    for text in messages:
        conv.send(text)
    k = 0
    while conv.summary is None or conv.summary.turns < len(messages):
        conv.send(filler[k % len(filler)])
        k += 1
        if k > 40:
            raise RuntimeError(f"{name}: the chat never folded its first turns")
    summary = conv.summary.text
    stated = [f for i, fs in facts.items() if i < conv.summary.turns for f in fs]
    kept = [f for f in stated if f.lower() in summary.lower()]
    answer = conv.send("我叫什么名字？" if name == "Chinese" else "What is my name?")
    return {
        "name": name, "stated": len(stated), "kept": len(kept), "missing": sorted(set(stated) - set(kept)),
        "tokens": Tokenizer().count_text(summary), "limit": limit, "summary": summary, "repeats": repeats(summary),
        "answer": answer,
    }  # fmt: skip


# -- Chinese ---------------------------------------------------------------------------------------

ZH_DOC = """# 安装软件包

在 Debian 系统上，软件包由 APT 统一管理，安装前应当先更新软件源列表。更新之后，系统会知道每个软件包的最新版本。
Support: https://www.debian.org/support

    sudo apt-get update
    sudo apt-get install nginx

安装完成后，服务会自动启动，并在开机时运行。如果只想下载而不安装，可以加上下载选项！

# 配置防火墙

防火墙默认拒绝所有外部连接，只有明确放行的端口才能访问。对网页服务来说，通常需要放行八十和四百四十三端口。
Support: https://www.debian.org/support

```
ufw allow 80/tcp
ufw allow 443/tcp
```

修改规则之后要重新加载防火墙，新的规则才会生效；否则旧的规则会继续起作用。

# 日志与排错

服务出错时，首先应该查看系统日志，那里记录了启动失败的原因。日志文件会定期轮换，旧的日志会被压缩保存。
Support: https://www.debian.org/support

    journalctl -u nginx --since today

如果日志里没有线索，可以把服务切换到调试模式，再重现一次问题……调试结束后记得关闭调试模式，以免日志过大。
"""


def chinese(client: Client) -> list[dict[str, Any]]:
    source = {normal(s) for line in ZH_DOC.split("\n") for s in re.split(r"(?<=[。！？；…])", line) if s.strip()}
    direct = client.create(messages=[{"role": "user", "content": "请总结以下文章：\n\n" + ZH_DOC}], max_tokens=150)
    reduced = map_reduce(chunk_text(ZH_DOC, max_tokens=120), "请总结以下文章。", client=client, progress=False,
                         max_tokens=150).text  # fmt: skip
    rows = []
    for how, text in (("one request", "".join(b.text for b in direct.content if b.type == "text")), ("map-reduce", reduced)):
        said = sentences(text)
        rows.append({
            "how": how, "text": text, "heading": text.startswith("摘要："),
            "chinese": sum(1 for s in said if re.search("[\u4e00-\u9fff]", s)) == len(said) > 0,
            "punctuated": all(s.endswith(("。", "！", "？", "；", "…")) for s in said),
            "whole": all(normal(s) in source for s in said),
            "no_code": not re.search(r"apt-get|ufw|journalctl|https?://|Support:", text),
            "repeats": repeats(text), "tokens": Tokenizer().count_text(text),
        })  # fmt: skip
    return rows


# -- report ----------------------------------------------------------------------------------------


def main() -> None:
    with Simulator(seed=0) as sim:
        client = Client(api_key="bench", base_url=sim.base_url, model=MODEL)
        cov = coverage(client)
        chats = [recall(client, *chat) for chat in CHATS]
        zh = chinese(client)
    stated = sum(c["stated"] for c in chats)
    kept = sum(c["kept"] for c in chats)
    total_repeats = cov["repeats"] + sum(c["repeats"] for c in chats) + sum(r["repeats"] for r in zh)
    lines = [
        "# Offline model quality: coverage, fact recall, Chinese, repeats", "",
        _machine.machine("anthropic"), "",
        "## Coverage of the demo's summary", "",
        (f"`samples/python-docs.txt` map-reduced as `convo summarize --sim` does it: {cov['chunks']} chunks of at "
         f"most 2,000 tokens, the CLI's instruction, max_tokens 1024. Topics: the sample's distinct headings with "
         f"prose under them ({cov['topics']})."), "",
        "| summary tokens | sentences | found verbatim in the sample | topics covered | coverage | target |",
        "|---:|---:|---:|---:|---:|---:|",
        (f"| {cov['tokens']:,} | {cov['sentences']} | {cov['verbatim']} | {cov['covered']} of {cov['topics']} | "
         f"{cov['share']:.0%} | >= 40% |"), "",
        "## Fact recall of rolling summaries", "",
        ("Each chat states its facts, then asks filler questions until those turns are folded into the summary "
         "(`Summarize(max_summary_tokens=200, keep_last=2)`, budget 1,200, max_tokens 200). Then it asks for the "
         "user's name."), "",
        "| chat | facts stated in folded turns | kept | summary tokens (limit) | missing | reply to \"What is my name?\" |",
        "|---|---:|---:|---:|---|---|",
    ]  # fmt: skip
    for c in chats:
        lines.append(f"| {c['name']} | {c['stated']} | {c['kept']} | {c['tokens']} ({c['limit']}) | "
                     f"{', '.join(c['missing']) or '-'} | {c['answer']} |")  # fmt: skip
    lines += [f"| **all** | {stated} | {kept} ({kept / stated:.0%}; target >= 90%) | | | |", ""]
    lines += ["## Chinese", "", ("A Chinese instruction (请总结以下文章) on a Chinese text with shell commands, a "
              "code block and a `Support:` line in every section."), "",
              ("| asked | Chinese heading | all sentences Chinese | punctuated | whole sentences of the text | "
               "no code/URL | repeats | tokens |"), "|---|---|---|---|---|---|---:|---:|"]  # fmt: skip
    for r in zh:
        yes = {True: "yes", False: "**no**"}
        lines.append(f"| {r['how']} | {yes[r['heading']]} | {yes[r['chinese']]} | {yes[r['punctuated']]} | "
                     f"{yes[r['whole']]} | {yes[r['no_code']]} | {r['repeats']} | {r['tokens']} |")  # fmt: skip
    lines += ["", f"## Repeated sentences: {total_repeats} (target 0)", "", "## The outputs", "",
              "The demo's summary:", "", "```", cov["summary"], "```", ""]  # fmt: skip
    for c in chats:
        lines += [f"Rolling summary, {c['name']}:", "", "```", c["summary"], "```", ""]
    for r in zh:
        lines += [f"Chinese, {r['how']}:", "", "```", r["text"], "```", ""]
    report = "\n".join(lines)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report, encoding="utf-8")
    print(report.split("## The outputs")[0])
    print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""What a chat has established: facts from the user's turns, for rolling summaries and recall.

A rolling summary (the request convo's ``Summarize`` sends: "Summary so far:" and "New turns:"
with a ``User:`` / ``Assistant:`` transcript) must keep what a summary of a chat must keep: names,
numbers, dates, preferences and decisions. Each user sentence that states one becomes a short
factual sentence in the third person ("The user's name is Ada.", "Grace is vegetarian.",
"Their budget is about 6,000 euros."); questions become "The user asked ...". The previous
summary's sentences are kept, a newer fact replacing an older one about the same thing (a name,
a relation, the budget), and the most important ones are kept within ``max_tokens``, in the
order they were stated. The same facts let a chat reply answer "What is my name?" from the
history, in the second person. English and Chinese.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .text import is_cjk, split_sentences, terms

__all__ = ["facts_of", "recall", "rolling_summary"]

_ROLLING = re.compile(r"^New turns:\s*$", re.MULTILINE)
_PREVIOUS = re.compile(r"^Summary so far:\n(.*?)(?=\n\nNew turns:\n)", re.MULTILINE | re.DOTALL)
_SPEAKER = re.compile(r"\n\n(?=(?:User|Assistant): )")
_NAME = r"([A-Z][a-z]+(?: [A-Z][a-z]+)?)"
_NOT_NAMES = frozenset(["Sure", "Sorry", "Happy", "Glad", "Not", "Just", "Here", "Back", "Fine", "Ready", "Done", "Going", "Looking", "Trying", "Planning"])
_INTRO = re.compile(rf"^(?i:my name is|my name's|i am|i'm|call me|this is)\s+{_NAME}\b[,;]?\s*(?:and\s+)?")
_RELATIONS = (
    "partner|wife|husband|boyfriend|girlfriend|fiancée?|friend|son|daughter|brother|sister|mother|father|mom|"
    "mum|dad|boss|colleague|manager|dog|cat|kid|child|roommate|cousin|aunt|uncle"
)
_RELATION = re.compile(rf"\bmy (?:best )?({_RELATIONS}),? (?:is |called |named )?{_NAME}")
_RELATION_AFTER = re.compile(rf"\b{_NAME},? (?:is )?my ({_RELATIONS})\b")
_DIET = re.compile(
    r"\b(I|we|[A-Z][a-z]+) (?:am|'m|is|are|'re) (?:a |an )?(vegetarian|vegan|pescatarian|gluten[- ]free|"
    r"lactose[- ]intolerant|diabetic|halal|kosher|allergic to [^.,;!?]+)",
)
_CANT_EAT = re.compile(r"\b(I|we|[A-Z][a-z]+) (?:can't|cannot|can not|don't|do not|doesn't|does not) eat ([^.,;!?]+)")
_FILLER = re.compile(
    r"^(?:hi|hello|hey|great|thanks|thank you|ok|okay|so|also|oh|well|and|but|by the way|btw|perfect|cool)\b[!,.]*\s*",
    re.IGNORECASE,
)
_MONEY = re.compile(
    r"[$€£¥]\s?\d|\d[\d,.]*\s?(?:k\b|dollars?|euros?|pounds?|yen|usd|eur|gbp|rmb|yuan)|\bbudget\b|预算|\d+\s*(?:元|块)",
    re.IGNORECASE,
)
_DATE = re.compile(
    r"\b(?:jan(?:uary)?|feb(?:ruary)?|march|april|may|june|july|aug(?:ust)?|sep(?:tember)?|oct(?:ober)?|"
    r"nov(?:ember)?|dec(?:ember)?|monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|"
    r"tonight|yesterday|weekend|next (?:week|month|year))\b|\b\d{1,2}(?:st|nd|rd|th)\b|\b(?:19|20)\d\d\b|\d+月|\d+[日号]|周[一二三四五六日末]",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve|dozen|couple)\b"
    r"|[零一二两三四五六七八九十百千万]+(?:[个位天年月周日号点元块次岁人千万])",
    re.IGNORECASE,
)
_LIKES = re.compile(
    r"\b(?:love|loves|like|likes|prefer|prefers|enjoy|enjoys|hate|hates|dislike|favou?rite|can't stand|"
    r"not so much|allergic|vegetarian|vegan|rather)\b|喜欢|不喜欢|爱|讨厌|偏好|素食|吃素|不吃|过敏",
    re.IGNORECASE,
)
_DECIDES = re.compile(
    r"\b(?:let's|we'll|i'll|decided|going to|plan to|planning|want to|we want|i want|would like|'d like|will|chose|"
    r"booked|book)\b|打算|决定|计划|想要|准备",
    re.IGNORECASE,
)
_PROPER = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{2,}")
_ASKS = re.compile(r"^(?:please |(?:can|could|would|will) you (?:please )?)(.+?)[?.!]*$", re.IGNORECASE)
_QUESTION = re.compile(r"\?\s*$|？\s*$")

_THIRD = [
    (re.compile(r"\bI'm\b|\bI am\b"), "the user is"), (re.compile(r"\bI've\b"), "the user has"),
    (re.compile(r"\bI'd\b"), "the user would"), (re.compile(r"\bI'll\b"), "the user will"),
    (re.compile(r"\bI was\b"), "the user was"), (re.compile(r"\blet's\b", re.IGNORECASE), "they decided to"),
    (re.compile(r"\bwe're\b|\bwe are\b", re.IGNORECASE), "they are"), (re.compile(r"\bwe've\b", re.IGNORECASE), "they have"),
    (re.compile(r"\bwe'd\b", re.IGNORECASE), "they would"), (re.compile(r"\bwe'll\b", re.IGNORECASE), "they will"),
    (re.compile(r"\bmy\b", re.IGNORECASE), "the user's"), (re.compile(r"\bmine\b", re.IGNORECASE), "the user's"),
    (re.compile(r"\bmyself\b", re.IGNORECASE), "themself"), (re.compile(r"\bme\b", re.IGNORECASE), "the user"),
    (re.compile(r"\bour\b", re.IGNORECASE), "their"), (re.compile(r"\bours\b", re.IGNORECASE), "theirs"),
    (re.compile(r"\bus\b", re.IGNORECASE), "them"), (re.compile(r"\bwe\b", re.IGNORECASE), "they"),
    (re.compile(r"\byour\b", re.IGNORECASE), "the assistant's"), (re.compile(r"\byou\b", re.IGNORECASE), "the assistant"),
]  # fmt: skip
_I_VERB = re.compile(r"\bI (\w+(?:'t)?)")
_INVERTED = frozenset(["do", "am", "can", "did", "may", "should", "would", "could", "will", "shall", "must"])
_SAME = frozenset(["can", "can't", "cannot", "could", "couldn't", "would", "wouldn't", "should", "will", "won't", "must", "might", "may", "did", "didn't", "had", "was"])
_ZH_THIRD = [("我们", "他们"), ("咱们", "他们"), ("我的", "用户的"), ("我", "用户"), ("你们", "助手"), ("你", "助手")]


def _verb(word: str) -> str:
    """The third-person form of a verb after "I"."""
    irregular = {"am": "is", "have": "has", "do": "does", "don't": "doesn't", "go": "goes"}
    if word in irregular:
        return irregular[word]
    if word in _SAME or not word.isalpha() or not word.islower():
        return word
    if word.endswith(("s", "sh", "ch", "x", "o")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in tuple("aeiou"):
        return word[:-1] + "ies"
    return word + "s"


def third_person(sentence: str) -> str:
    """A user's sentence as said about the user."""
    if is_cjk(sentence):
        for a, b in _ZH_THIRD:
            sentence = sentence.replace(a, b)
        return sentence
    out = sentence
    for pattern, repl in _THIRD[:6]:
        out = pattern.sub(repl, out)

    def subject(m: re.Match[str]) -> str:
        before = out[: m.start()].split()
        inverted = bool(before) and before[-1].lower() in _INVERTED  # "should I keep": no -s
        return "the user " + (m.group(1) if inverted else _verb(m.group(1)))

    out = _I_VERB.sub(subject, out)
    for pattern, repl in _THIRD[6:]:
        out = pattern.sub(repl, out)
    return _capital(out)


def _capital(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _ending(s: str, zh: bool) -> str:
    s = s.rstrip(" ,;:，；：")
    if zh:
        return s if s.endswith(("。", "！", "？", "…")) else s.rstrip(".!") + "。"
    return s if s.endswith((".", "!", "?")) else s + "."


def _subject(word: str) -> str:
    return {"I": "The user", "we": "They", "We": "They"}.get(word, word)


@dataclass(frozen=True)
class Fact:
    """A factual sentence, what it is about (a newer fact with the same key replaces it) and
    how much it matters (higher is kept first)."""

    key: str
    text: str
    rank: int


def classify(sentence: str) -> Fact:
    """A third-person sentence as a fact: its key and rank."""
    low = sentence.lower()
    m = re.match(r"the user's name is ", low) or re.match("用户的名字是", sentence)
    if m:
        return Fact("name", sentence, 100)
    m = re.match(rf"the user's ({_RELATIONS}) is ", low)
    if m:
        return Fact("rel:" + m.group(1), sentence, 95)
    if _DIET.search(sentence) or re.search(r"\b(?:can't|cannot|can not|doesn't|don't) eat\b|\ballergic\b|素食|吃素|不吃|过敏", low):
        return Fact(low, sentence, 90)
    asked = low.startswith("the user asked") or sentence.startswith("用户问") or _QUESTION.search(sentence)
    rank = 0
    if _MONEY.search(sentence):
        rank = 85
    elif _DATE.search(sentence):
        rank = 80
    elif _LIKES.search(sentence):
        rank = 75
    elif _NUMBER.search(sentence):
        rank = 70
    elif _DECIDES.search(sentence):
        rank = 65
    elif _PROPER.search(sentence) or re.match(r"the user is (?:a|an|the) ", low) or re.search(r"住在|来自|工作|职业|用户是", sentence):
        rank = 50
    if asked:
        rank = max(20, rank - 45) if rank else 0
    key = "budget" if "budget" in low and not asked else low
    return Fact(key, sentence, rank)


@lru_cache(maxsize=4096)
def facts_of(text: str) -> tuple[Fact, ...]:
    """The facts a user's message states, as third-person sentences."""
    zh = is_cjk(text)
    out: list[Fact] = []
    for raw in split_sentences(text):
        s = raw
        while True:
            trimmed = _FILLER.sub("", s, count=1)
            if trimmed == s:
                break
            s = trimmed
        if not s:
            continue
        if zh:
            m = re.search(r"我(?:叫|的名字(?:是|叫))([\u4e00-\u9fff]{1,3}?)(?=[，。！？,.!?\s]|$)", s)
            if m:
                out.append(classify(f"用户的名字是{m.group(1)}。"))
                s = (s[: m.start()] + s[m.end() :]).strip("，, ")
                s = s if not s or s.startswith(("我", "他", "她", "你")) else "我" + s
            s = re.sub(r"^(?:你好|您好|嗨|谢谢|好的)[，,！!。\s]*", "", s)
            said = third_person(s)
            if _QUESTION.search(s):
                said = "用户问：" + said
            f = classify(_ending(said, True))
            if f.rank:
                out.append(f)
            continue
        intro = _INTRO.match(s)
        if intro and intro.group(1).split()[0] not in _NOT_NAMES:
            out.append(classify(f"The user's name is {intro.group(1)}."))
            rest = s[intro.end() :]
            apposition = s[intro.end(1) : intro.end()].strip() == "," and not re.match(r"(?i:i|we|my|our)\b", rest)
            s = ("I am " + rest) if apposition and rest else _capital(rest)
        canon = []
        for m in _RELATION.finditer(s):
            canon.append(f"The user's {m.group(1).lower()} is {m.group(2)}.")
        for m in _RELATION_AFTER.finditer(s):
            canon.append(f"The user's {m.group(2).lower()} is {m.group(1)}.")
        for m in _DIET.finditer(s):
            verb = "are" if m.group(1).lower() == "we" else "is"
            canon.append(f"{_subject(m.group(1))} {verb} {m.group(2)}.")
        for m in _CANT_EAT.finditer(s):
            canon.append(f"{_subject(m.group(1))} can't eat {m.group(2).strip()}.")
        out.extend(classify(c) for c in canon)
        if not s or (canon and not (_MONEY.search(s) or _DATE.search(s))):
            continue
        asks = _ASKS.match(s)
        if asks:
            said = f"The user asked the assistant to {third_person(asks.group(1))[:1].lower()}{third_person(asks.group(1))[1:]}"
        elif _QUESTION.search(s):
            said = "The user asked: " + third_person(s)[:1].lower() + third_person(s)[1:]
        else:
            said = third_person(s)
        f = classify(_ending(said, False))
        if f.rank:
            out.append(f)
    return tuple(out)


def _transcript(request: str) -> tuple[list[str], list[str]]:
    """(previous summary's sentences, the new user turns) of a rolling-summary request."""
    prev = _PREVIOUS.search(request)
    earlier = split_sentences(prev.group(1)) if prev else []
    turns = request.split("\nNew turns:\n", 1)[-1] if "\nNew turns:\n" in request else ""
    users: list[str] = []
    speaker = ""
    for piece in _SPEAKER.split(turns):
        if piece.startswith(("User: ", "Assistant: ")):
            speaker, _, piece = piece.partition(": ")
            if speaker == "User":
                users.append(piece)
        elif speaker == "User" and users:
            users[-1] += "\n\n" + piece
    return earlier, users


def rolling_summary(request: str, max_tokens: int, cost: Callable[[str], int]) -> str:
    """The updated summary a rolling-summary request asks for: the facts so far and the new
    turns', the most important first within ``max_tokens``, in the order they were stated."""
    earlier, users = _transcript(request)
    facts = [classify(s) for s in earlier]
    for text in users:
        facts.extend(facts_of(text))
    latest: dict[str, int] = {}
    for i, f in enumerate(facts):
        latest[f.key] = i
    order = sorted(latest.values())
    zh = is_cjk(" ".join(users)) if users else is_cjk(" ".join(earlier))
    glue = "" if zh else " "
    keep: set[int] = set()
    used = 0
    for i in sorted(order, key=lambda i: (-facts[i].rank, i)):
        n = cost(facts[i].text) + (0 if zh else 1)
        if used + n <= max_tokens:
            keep.add(i)
            used += n
    text = glue.join(facts[i].text for i in order if i in keep)
    if text:
        return text
    words = list(dict.fromkeys(t for u in users for t in terms(u)))[:3]
    if zh:
        return _fit(f"用户和助手聊了{'、'.join(words)}。" if words else "用户和助手简短地交谈了。", max_tokens, cost)
    about = " and ".join(words) if len(words) < 3 else f"{words[0]}, {words[1]} and {words[2]}"
    return _fit(f"The user and the assistant talked about {about}." if words else "The user and the assistant chatted briefly.",
                max_tokens, cost)  # fmt: skip


def _fit(text: str, max_tokens: int, cost: Callable[[str], int]) -> str:
    while len(text) > 1 and cost(text) > max_tokens:
        text = text.rsplit(" ", 1)[0] if " " in text else text[:-1]
    return text


# -- recall --------------------------------------------------------------------------------------

_SECOND = [
    (re.compile(r"\bthe user's\b", re.IGNORECASE), "your"), (re.compile(r"\bthe user is\b", re.IGNORECASE), "you are"),
    (re.compile(r"\bthe user has\b", re.IGNORECASE), "you have"), (re.compile(r"\bthe user was\b", re.IGNORECASE), "you were"),
    (re.compile(r"\bthe user (\w+)s\b", re.IGNORECASE), r"you \1"), (re.compile(r"\bthe user\b", re.IGNORECASE), "you"),
    (re.compile(r"\bthey are\b", re.IGNORECASE), "you are"), (re.compile(r"\bthey\b", re.IGNORECASE), "you"),
    (re.compile(r"\btheir\b", re.IGNORECASE), "your"), (re.compile(r"\bthem\b", re.IGNORECASE), "you"),
    (re.compile(r"\bthemself\b", re.IGNORECASE), "yourself"),
]  # fmt: skip
_ASK_NAME = re.compile(r"\bwhat(?:'s| is) my name\b|\bwho am i\b|\b(?:know|remember|recall) my name\b|我叫什么|我的名字", re.IGNORECASE)
_ASK_RELATION = re.compile(rf"\bmy ({_RELATIONS})(?:'s name)?\b", re.IGNORECASE)
_ABOUT_ME = re.compile(r"\b(?:my|i|me|we|our|us|remember|recall|earlier|before)\b|我", re.IGNORECASE)
_HEADER = "[Summary of the earlier conversation]"


def second_person(fact: str) -> str:
    """A third-person fact as said to the user."""
    if is_cjk(fact):
        return fact.replace("用户的", "你的").replace("用户", "你").replace("他们", "你们")
    out = fact
    for pattern, repl in _SECOND:
        out = pattern.sub(repl, out)
    out = re.sub(r"\byou (\w+)ie\b", r"you \1y", out)
    return _capital(out.replace("you does", "you do").replace("you doesn't", "you don't").replace("you goe", "you go"))


def memory(history: Sequence[str]) -> list[Fact]:
    """The facts earlier user turns stated (a rolling summary's sentences included)."""
    facts: list[Fact] = []
    for text in history:
        if text.startswith(_HEADER):
            facts.extend(classify(s) for s in split_sentences(text[len(_HEADER) :]))
        else:
            facts.extend(facts_of(text))
    return facts


def recall(last: str, history: Sequence[str], words: Sequence[str] | None = None) -> tuple[str, bool]:
    """What the conversation says that answers or bears on ``last``: (sentence, is an answer).
    ("", False) when nothing does. Cheap when the history shares no term with the message.
    ``words`` are the message's :func:`terms`, when the caller has them."""
    question = bool(_QUESTION.search(last))
    wanted = set(terms(last) if words is None else words)
    lettered = {t for t in wanted if not t.isdigit()}
    if not question and not any(lettered.intersection(terms(h)) for h in history):
        return "", False
    facts = [f for f in memory(history) if f.rank and not f.text.startswith("The user asked")]
    if not facts:
        return "", False
    if question and _ASK_NAME.search(last):
        named = [f for f in facts if f.key == "name"]
        if named:
            return second_person(named[-1].text), True
    relation = _ASK_RELATION.search(last) if question and re.search(r"\b(?:who|name|called)\b", last, re.IGNORECASE) else None
    if relation:
        known = [f for f in facts if f.key == "rel:" + relation.group(1).lower()]
        if known:
            return second_person(known[-1].text), True
    best, score = None, 0
    for f in facts:
        n = len(wanted & set(terms(f.text)))
        if n and n >= score:
            best, score = f, n
    if best is None:
        return "", False
    return second_person(best.text), question and bool(_ABOUT_ME.search(last))

"""Does the offline estimate converge to the server's count? Error before and after 5 turns.

convo's offline estimate (``OfflineCounter``: cl100k_base x 1.10, CJK corrected) learns a
per-model correction from each response's usage (``convo.tokens.Calibration``). This bench
measures how far the corrected estimate is from the server's own count of the same request,
for English and for Chinese, per model:

1. ``before``: a fresh counter (no responses yet) estimates 8 held-out single-turn requests; each
   is compared with the simulator's ``count_tokens`` answer for it.
2. Five turns of a ``Conversation`` go through ``Client`` (each response feeds the calibration).
3. ``after``: the same 8 requests, estimated again with the learned correction.

The error is (estimate - server) / server: positive is an overestimate (safe: trims a little
early), negative an underestimate (a context-overflow error at the API). Reported: the median,
and the worst underestimate.

The server's count is the simulator's: it has a tokenizer of its own (``convo/sim/tokens.py``),
written independently of convo's estimate and differing from it per language and per model
family, as a real tokenizer does.

Run: ``.venv/bin/python bench/calibration.py`` (``--quick``: fewer models, writes nothing). Writes ``bench/results/calibration.md``. Takes a few seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _machine import machine

from convo import Client, Conversation
from convo.sim import Simulator
from convo.tokens import CachedCounter, OfflineCounter, calibration_of, count_tokens

MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-sonnet-5-5")
TURNS = 5
PROBES = 8
ZH_SAMPLE = Path(__file__).with_name("data") / "zh_sample.txt"

# English paragraphs written for this benchmark (everyday topics, varied length).
ENGLISH = (
    (
        "The train to the coast leaves every hour on weekdays, but on Sundays it only runs in the "
        "morning and late in the afternoon, so plan the return trip before you go."
    ),
    (
        "My sourdough starter has been sluggish since the kitchen got colder. Should I feed it more "
        "often, move it somewhere warmer, or change the ratio of flour to water?"
    ),
    (
        "Please review the attached notes from the planning meeting and list the three decisions we "
        "made, who owns each one, and the date we agreed to check on progress."
    ),
    (
        "When the library reopens after the renovation it will have a quiet reading room on the top "
        "floor, a children's corner with low shelves, and longer opening hours on Thursdays."
    ),
    (
        "Explain, in plain words, why the sky looks blue at noon but turns orange and red at sunset, "
        "and whether the same thing happens on other planets with an atmosphere."
    ),
    (
        "We measured the garden beds again: the north bed gets four hours of direct sun in June and "
        "almost none in October, which rules out tomatoes but suits lettuce and herbs."
    ),
    (
        "Summarize the main arguments for and against a four-day working week, with one example of a "
        "company or country that tried it and what they reported afterwards."
    ),
    (
        "The museum's new exhibition follows a single wooden chest from a sixteenth-century workshop "
        "through five owners, two shipwrecks and a long forgotten attic in a farmhouse."
    ),
    (
        "If I walk thirty minutes a day at a brisk pace, how long would it take to notice a change "
        "in stamina, and is it better to walk once or split it into two shorter walks?"
    ),
    (
        "Our team's release checklist has grown to forty items. Which of them could be automated, "
        "which could be dropped, and which should stay a careful manual step?"
    ),
    (
        "A neighbour asked how to keep pigeons off the balcony without harming them. Suggest a few "
        "humane options and say which ones tend to work for more than a couple of weeks."
    ),
    (
        "Write a short, friendly note to the building manager about the broken light in the "
        "stairwell on the third floor, which has been out for nearly two weeks now."
    ),
    (
        "Compare reading on paper with reading on a screen for long texts: what do studies say about "
        "comprehension, eye strain, and how much people remember a week later?"
    ),
)


def chinese() -> tuple[str, ...]:
    text = ZH_SAMPLE.read_text(encoding="utf-8")
    parts = [p.strip() for p in text.split("\n") if len(p.strip()) > 40]
    return tuple(parts)


def errors(client: Client, counter: Any, model: str, probes: list[str]) -> list[float]:
    """(corrected estimate - server count) / server count, per probe request."""
    cal = calibration_of(counter)
    out = []
    for text in probes:
        messages = [{"role": "user", "content": text}]
        truth = client.count_tokens(messages, model=model)
        estimate = count_tokens(messages, counter=counter)
        corrected = cal.apply(model, estimate) if cal is not None else estimate
        out.append((corrected - truth) / truth)
    return out


def run(sim: Simulator, language: str, texts: tuple[str, ...], model: str) -> dict[str, Any]:
    counter = CachedCounter(OfflineCounter())
    client = Client(api_key="bench", base_url=sim.base_url, model=model, counter=counter)
    probes = list(texts[-PROBES:])
    before = errors(client, counter, model, probes)
    conv = Conversation(model=model, budget=200_000, max_tokens=300, client=client, counter=counter)
    for text in texts[:TURNS]:
        conv.send(text)
    after = errors(client, counter, model, probes)
    cal = calibration_of(counter)
    client.close()
    return {
        "language": language,
        "model": model,
        "factor": cal.factor(model) if cal is not None else 1.0,
        "samples": cal.samples(model) if cal is not None else 0,
        "before": before,
        "after": after,
    }


def pct(x: float) -> str:
    return f"{x:+.1%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one model, print only")
    args = parser.parse_args()
    models = MODELS[:1] if args.quick else MODELS
    zh = chinese()
    if len(zh) < TURNS + PROBES:
        raise SystemExit(f"{ZH_SAMPLE} has {len(zh)} paragraphs; {TURNS + PROBES} are needed")
    rows = []
    with Simulator(seed=0) as sim:
        for language, texts in (("English", ENGLISH), ("Chinese", zh)):
            for model in models:
                rows.append(run(sim, language, texts, model))
    server = "its own tokenizer"
    lines = [
        "# Offline estimate vs the server's count, before and after 5 turns",
        "",
        machine("anthropic", "tiktoken"),
        "",
        (
            f"{PROBES} held-out single-turn requests per language, estimated by a fresh offline counter "
            f"(before), then again after {TURNS} turns of a Conversation through Client taught it the "
            f"server's counts (after). The simulator counts with {server}. Error = (estimate - server) / "
            "server; negative is an underestimate. See the docstring of `bench/calibration.py`."
        ),
        "",
        "| language | model | median before | worst under before | median after | worst under after | factor | responses |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['language']} | {r['model']} | {pct(statistics.median(r['before']))} | "
            f"{pct(min(0.0, *r['before']))} | {pct(statistics.median(r['after']))} | "
            f"{pct(min(0.0, *r['after']))} | {r['factor']:.3f} | {r['samples']} |"
        )
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if not args.quick:
        out = Path(__file__).parent / "results" / "calibration.md"
        out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

"""An embedded Anthropic-compatible server: the Messages API, streaming, count_tokens,
Message Batches and the Models API, with an offline model, rate limits and fault injection.

It is a second implementation of the API, not a mirror of convo: it imports nothing of convo
outside this package. It reads the same model data file (``convo/data/models.json``) with
its own loader, parses requests with its own rules (:mod:`convo.sim.rules`, each with its
source), and counts tokens with its own tokenizer (:mod:`convo.sim.tokens`).

>>> import anthropic
>>> from convo.sim import Simulator
>>> with Simulator(seed=0, rpm=50, faults=["529", "ok"]) as sim:
...     client = anthropic.Anthropic(base_url=sim.base_url, api_key="test")
...     reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=200,
...                                    messages=[{"role": "user", "content": "Hello"}])

Point the official SDK (or convo's client) at ``sim.base_url``; ``sim.requests`` shows what
was sent. ``convo.sim.run(port=8080)`` serves in the foreground.
"""

try:
    import aiohttp  # noqa: F401  (the HTTP server; an extra, so say how to get it)
except ImportError as exc:
    raise ImportError("convo.sim needs aiohttp: pip install 'convo[sim]'", name="aiohttp") from exc

from .app import Recorded
from .errors import SimConfigError
from .faults import Fault, Faults
from .limits import ManualClock, RateLimits
from .model import OfflineModel, Reply
from .server import Simulator, run
from .tokens import TextTokenizer, Tokenizer

__all__ = [
    "Fault", "Faults", "ManualClock", "OfflineModel", "RateLimits", "Recorded", "Reply", "SimConfigError", "Simulator",
    "TextTokenizer", "Tokenizer", "run",
]  # fmt: skip

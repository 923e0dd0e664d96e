"""One turn of a conversation, written once as a flow for the sync and the async driver.

The flow (:func:`turn_flow`) adds the user turn, then per step: lets the strategy summarize,
fits the request into the budget, calls the model, stores the reply by its stop reason, and for
``tool_use`` runs the tools and adds one user turn with all their results, in order. It yields
*operations* (:class:`Compact`, :class:`Call`, :class:`RunTools`) that the driver performs and
sends back the answer of, and events (:mod:`convo.events`) the driver passes on. Stop reasons:

- ``end_turn``, ``stop_sequence``: stored; the turn ends.
- ``max_tokens``, ``model_context_window_exceeded``: stored (without a cut-off tool call), the
  reply is ``truncated``.
- ``pause_turn``: stored and sent back so the model goes on; the continuation is merged into
  the paused message; counts as a step.
- ``refusal``: the exchange is taken out of the history unless ``keep_refusals``.
- ``tool_use``: the tools run when convo has a function for every call; otherwise the reply
  lists them (``reply.pending``) and the history waits for the caller's results.

Since each step is a new fitted request, the strategy may trim or summarize between steps; a
``tool_use`` and its ``tool_result`` are in one turn, which strategies keep or drop whole. When
the running turn alone outgrows the budget, its oldest tool results are cleared (each call keeps
a short result), the newest kept (:func:`fitted_request`).
Any failure takes the whole turn back, reaching ``max_steps`` too (:class:`~convo.MaxStepsError`
carries what the turn did).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ._exceptions import ContextOverflowError, InvalidConfigError
from ._limits import model_info
from ._resume import CONTINUE_PROMPT, accepts_prefill
from .events import StepEnd, ThinkingDelta, ToolCallStart, ToolInputComplete, ToolResult
from .messages import to_message
from .reply import TRUNCATING, MaxStepsError, OutputValidationError, Reply, Step, ToolCall
from .tools import ToolSet

__all__ = ["Call", "Compact", "Output", "RunTools", "TurnOptions", "turn_flow"]

#: What replaces an old tool result of the running turn when the turn alone outgrows the budget.
CLEARED = "[this tool result was cleared to keep the conversation within its token budget]"
#: The tool the model is made to call for ``output=`` on a model without structured outputs.
OUTPUT_TOOL = "structured_output"
DEFAULT_MAX_STEPS = 10


@dataclass(frozen=True)
class Compact:
    """Run the strategy's summarizing step (quietly: a failure is only recorded)."""

    max_tokens: int | None
    tools: Any


@dataclass(frozen=True)
class Call:
    """Call the model with ``request``: ``client.stream`` when ``stream``, else ``client.create``."""

    request: dict[str, Any]
    stream: bool
    step: int


@dataclass(frozen=True)
class RunTools:
    """Run ``calls`` ((id, name, input) each) with ``tools``; answer with their ToolCalls."""

    tools: ToolSet
    calls: list[tuple[str, str, Any]]


@dataclass(frozen=True)
class Output:
    """What ``send(..., output=...)`` asks for: a pydantic model class or a JSON schema dict."""

    model: type[BaseModel] | None
    schema: dict[str, Any]
    native: bool  # output_config.format; else a forced tool call

    @classmethod
    def of(cls, spec: Any, model: str, client: Any) -> Output:
        if isinstance(spec, type) and issubclass(spec, BaseModel):
            schema, target = spec.model_json_schema(), spec
        elif isinstance(spec, Mapping):
            schema, target = dict(spec), None
        else:
            raise InvalidConfigError(f"output= takes a pydantic model class or a JSON schema dict, got {spec!r}")
        return cls(target, schema, has_structured_outputs(model, client))

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        out = dict(params)
        if self.native:
            config = dict(out.get("output_config") or {})
            config["format"] = {"type": "json_schema", "schema": self.schema}
            out["output_config"] = config
        else:
            spec = {
                "name": OUTPUT_TOOL,
                "description": "Give the answer in this structure.",
                "input_schema": self.schema,
            }
            out["tools"] = [*out.get("tools", ()), spec]
            out["tool_choice"] = {"type": "tool", "name": OUTPUT_TOOL}
        return out

    def parse(self, raw: str) -> Any:
        """The validated answer; ValueError (with the reason) when ``raw`` does not fit."""
        if self.model is not None:
            try:
                return self.model.model_validate_json(raw)
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
        value = json.loads(raw)
        _check_schema(value, self.schema)
        return value


def has_structured_outputs(model: str, client: Any) -> bool:
    """From the catalogue: the ``structured_outputs`` field, else the Models API's capability."""
    info = model_info(model, client)
    if info is None:
        return False
    known = getattr(info, "structured_outputs", None)
    if known is not None:
        return bool(known)
    caps = info.capabilities or {}
    cap = caps.get("structured_outputs")
    return bool(cap.get("supported")) if isinstance(cap, Mapping) else bool(cap)


def _check_schema(value: Any, schema: Mapping[str, Any]) -> None:
    try:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # not a dependency: check the top level only
        if schema.get("type") == "object":
            if not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {type(value).__name__}") from None
            missing = [k for k in schema.get("required", ()) if k not in value]
            if missing:
                raise ValueError(f"missing required fields {missing}") from None
        return
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise ValueError(exc.message) from None


@dataclass
class TurnOptions:
    """One turn's settings, from the send/events call and the conversation."""

    max_tokens: int | None
    params: dict[str, Any]
    tools: ToolSet | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    output: Output | None = None
    stream: bool = False
    keep_refusals: bool = False
    api_tools: list[dict[str, Any]] = field(default_factory=list)

    def request_params(self) -> dict[str, Any]:
        params = dict(self.params)
        if self.api_tools:
            params["tools"] = self.api_tools
        return self.output.params(params) if self.output is not None else params


def _calls(message: Any) -> list[tuple[str, str, Any]]:
    return [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]


def _text(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def _message_events(message: Any, step: int) -> Generator[Any, None, None]:
    for block in message.content:
        if block.type == "thinking" and block.thinking:
            yield ThinkingDelta(block.thinking, step)
        elif block.type == "tool_use":
            yield ToolCallStart(block.id, block.name, step)
            yield ToolInputComplete(block.id, block.name, block.input, step)


def turn_flow(conv: Any, content: Any, o: TurnOptions, *, resume: int | None = None) -> Generator[Any, Any, Reply]:
    """The turn (see the module doc). With ``resume`` (the index of a truncated reply) it asks
    for the rest of that reply instead of adding ``content``, and joins the two."""
    mark = len(conv._messages)
    if resume is None:
        conv._append(to_message(content, role="user"))
    elif (
        not accepts_prefill(conv.model, o.params) or conv._messages[resume].text != conv._messages[resume].text.rstrip()
    ):
        # the model takes no prefill: ask in a user turn (dropped after)
        conv._append(to_message(CONTINUE_PROMPT, role="user"))
    steps: list[Step] = []
    paused = resume  # index of an assistant message the next step goes on from
    text = ""
    try:
        for n in range(o.max_steps):
            params = o.request_params()
            yield Compact(o.max_tokens, params.get("tools"))
            request = fitted_request(conv, o.max_tokens, params, mark)
            before = len(conv.receipts)
            message = conv._unredact(conv._record((yield Call(request, o.stream, n))))
            receipt = conv.receipts[-1] if len(conv.receipts) > before else None
            if not o.stream:  # a streamed step sent these as they arrived
                yield from _message_events(message, n)
            stop, calls = message.stop_reason, _calls(message)
            text = _text(message) if paused is None else text + _text(message)
            if stop == "refusal" and not o.keep_refusals:
                steps.append(Step(message, receipt))
                yield StepEnd(n, stop, message.usage, receipt)
                conv._truncate(mark)
                return Reply(text, steps=steps)
            output_call = o.output is not None and not o.output.native and any(c[1] == OUTPUT_TOOL for c in calls)
            paused = store_step(conv, message, paused, truncated=stop in TRUNCATING, as_text=output_call)
            if output_call:
                steps.append(Step(message, receipt))
                yield StepEnd(n, stop, message.usage, receipt)
                raw = json.dumps(next(c[2] for c in calls if c[1] == OUTPUT_TOOL), ensure_ascii=False)
                return _parsed(raw, steps, o)
            if stop == "tool_use" and calls and o.tools is not None and o.tools.can_run(calls):
                results: list[ToolCall] = yield RunTools(o.tools, calls)
                steps.append(Step(message, receipt, tuple(results)))
                yield StepEnd(n, stop, message.usage, receipt)
                for call in results:
                    yield ToolResult(call, n)
                add_results(conv, results)
                continue
            pending = tuple(ToolCall(i, name, raw) for i, name, raw in calls) if stop == "tool_use" else ()
            steps.append(Step(message, receipt, pending))
            yield StepEnd(n, stop, message.usage, receipt)
            if stop == "pause_turn":
                continue
            if o.output is not None:
                return _parsed(text, steps, o)
            return Reply(text, steps=steps)
    except BaseException:
        conv._truncate(mark)
        raise
    conv._truncate(mark)  # as after any failure: the conversation is as before the call
    raise MaxStepsError(
        f"the tool loop made max_steps={o.max_steps} model calls and the model still asks for tools "
        f"({', '.join(c.name for c in steps[-1].tool_calls) or steps[-1].stop_reason}); the turn was taken back "
        "(error.reply has its steps): raise max_steps, or ask for an answer without tools",
        reply=Reply(text, steps=steps),
    )


def _parsed(raw: str, steps: list[Step], o: TurnOptions) -> Reply:
    assert o.output is not None
    reply = Reply(raw, steps=steps)
    try:
        if reply.truncated:
            raise ValueError(f"the reply was cut off ({reply.stop_reason}); raise max_tokens")
        parsed = o.output.parse(raw)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise OutputValidationError(
            f"the reply does not fit the output schema: {exc}; the raw text is on the error (.raw)",
            raw=raw,
            reply=reply,
        ) from None
    return Reply(raw, steps=steps, parsed=parsed)


def fitted_request(conv: Any, max_tokens: int | None, params: dict[str, Any], start: int) -> dict[str, Any]:
    """The next step's request. When the running turn (from message ``start``) no longer fits
    however the strategy trims (strategies keep a turn whole), its oldest tool results are
    cleared one by one, the newest kept: each call keeps its (shortened) result."""
    while True:
        try:
            return dict(conv.request(max_tokens, **params))
        except ContextOverflowError:
            if not _clear_oldest_result(conv, start):
                raise


def _clear_oldest_result(conv: Any, start: int) -> bool:
    messages = conv._messages
    results = [i for i in range(start, len(messages)) if messages[i].tool_result_ids()]
    for i in results[:-1]:  # the newest results are what the model answers now
        blocks = [b.model_dump(mode="json", exclude_none=True) for b in messages[i].blocks]
        if all(b.get("content") == CLEARED for b in blocks if b["type"] == "tool_result"):
            continue
        for b in blocks:
            if b["type"] == "tool_result":
                b["content"] = CLEARED
        rest = conv._truncate(i)[1:]
        conv._append(to_message({"role": "user", "content": blocks}))
        for m in rest:
            conv._append(m)
        return True
    return False


def store_step(conv: Any, reply: Any, paused: int | None, *, truncated: bool, as_text: bool) -> int | None:
    """Add one step's reply to the history (joined onto the ``paused`` message it goes on
    from); the index of the stored message when the model paused (``pause_turn``)."""
    content: list[dict[str, Any]] = []
    for b in getattr(reply, "content", None) or ():
        block = b.model_dump(mode="json", exclude_none=True)
        if block.get("type") == "text":
            block.pop("citations", None)
            if not block.get("text", "").strip():
                continue
        content.append(block)
    if as_text:  # the forced output tool's answer becomes the reply's only text
        content = [{"type": "text", "text": json.dumps(b["input"], ensure_ascii=False)}
                   for b in content if b["type"] == "tool_use" and b["name"] == OUTPUT_TOOL]  # fmt: skip
    elif truncated:  # a tool call cut off by the limit cannot be answered
        content = [b for b in content if b["type"] != "tool_use"]
    at = paused
    if paused is not None:
        earlier = [b.model_dump(mode="json", exclude_none=True) for b in conv._messages[paused].blocks]
        conv._truncate(paused)  # the paused message (and a continuation prompt after it)
        if earlier and content and earlier[-1]["type"] == "text" and content[0]["type"] == "text":
            content[0] = {**content[0], "text": earlier.pop()["text"] + content[0]["text"]}
        content = [*earlier, *content]
    if content:
        at = len(conv._messages)
        conv._append(to_message({"role": "assistant", "content": content}))
    return at if getattr(reply, "stop_reason", None) == "pause_turn" else None


def add_results(conv: Any, calls: Sequence[ToolCall]) -> None:
    """One user turn answering every tool call, in order."""
    blocks = []
    for call in calls:
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id}
        if call.content is not None and call.content != "":
            block["content"] = call.content
        if call.is_error:
            block["is_error"] = True
        blocks.append(block)
    conv._append({"role": "user", "content": blocks})

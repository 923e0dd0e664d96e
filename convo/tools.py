"""Tools a conversation can run: Python functions, pydantic models and raw tool dicts.

>>> @convo.tool(description="The weather in a city now.")
... def get_weather(city: str, unit: str = "C") -> str:
...     return f"sunny, 21 {unit} in {city}"
>>> conv = convo.Conversation(client=client, tools=[get_weather])
>>> conv.send("use get_weather for Paris").tool_calls[0].result
'sunny, 21 C in Paris'

A plain function (sync or async) becomes a tool whose JSON schema pydantic builds from its type
hints; its docstring gives the description (the text before an ``Args:`` section) and the
parameters' descriptions (the ``name: text`` lines of that section). A pydantic model is a tool
whose input is that model (the result sent back is the validated object). A dict is sent as it
is: a custom tool (``name`` + ``input_schema``) convo cannot run (its calls come back in
``reply.pending``), or a server tool (``{"type": "web_search_20250305", ...}``) the API runs.
:func:`tool` names, describes or marks a tool ``strict`` (passed through to the API).

Running a call never raises: a tool that raises, input that is not valid JSON or does not fit
the schema all become an ``is_error`` result telling the model what was wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, overload

from pydantic import BaseModel, Field, ValidationError, create_model

from ._exceptions import InvalidConfigError
from .reply import ToolCall

__all__ = ["Tool", "ToolSet", "as_tool", "tool"]

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns|Raises|Yields|Examples?)\s*:\s*$", re.MULTILINE)
_PARAM = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")
#: Content block types a tool may return as they are (a list of them becomes the result's content).
_RESULT_BLOCKS = frozenset({"text", "image", "document", "search_result"})


class Tool:
    """A tool as sent to the API (:meth:`to_api`) and, when it has a ``function``, run by convo.

    Build one with :func:`tool` or :func:`as_tool`. A decorated function stays callable.
    """

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        input_schema: Mapping[str, Any] | None = None,
        function: Callable[..., Any] | None = None,
        model: type[BaseModel] | None = None,
        spec: Mapping[str, Any] | None = None,
        strict: bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", name):
            raise InvalidConfigError(f"tool name {name!r} must be 1-128 letters, digits, '_' or '-'")
        self.name = name
        self.description = description
        self.input_schema = dict(input_schema or {"type": "object", "properties": {}})
        self.function = function
        self.model = model
        self.strict = strict
        self._spec = dict(spec) if spec is not None else None
        self.is_async = function is not None and inspect.iscoroutinefunction(function)

    def __repr__(self) -> str:
        kind = "runs" if self.function is not None else "answered by you" if self._spec is None else "passed through"
        return f"Tool({self.name!r}, {kind})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.function is None:
            raise TypeError(f"tool {self.name!r} has no Python function to call")
        return self.function(*args, **kwargs)

    @property
    def runnable(self) -> bool:
        """Whether convo runs this tool's calls (it has a Python function, or is a pydantic model)."""
        return self.function is not None or self.model is not None

    def to_api(self) -> dict[str, Any]:
        """The tool definition for the request's ``tools``."""
        if self._spec is not None:
            return dict(self._spec)
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["input_schema"] = self.input_schema
        if self.strict is not None:
            out["strict"] = self.strict
        return out

    # -- running a call ------------------------------------------------------------------------

    def _arguments(self, raw: Any) -> tuple[Any, str | None]:
        """The validated input (kwargs for a function, the object for a model), or an error text."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                return None, f"the input for {self.name} is not valid JSON ({exc}); send a JSON object"
        if not isinstance(raw, dict):
            return None, f"the input for {self.name} must be a JSON object, got {type(raw).__name__}"
        if self.model is None:
            return raw, None
        try:
            value = self.model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            return None, f"invalid input for {self.name}: {problems}"
        if self.function is None:
            return value, None
        return {k: getattr(value, k) for k in type(value).model_fields}, None

    def _finish(self, call_id: str, raw: Any, result: Any, error: str | None, started: float) -> ToolCall:
        duration = time.perf_counter() - started
        if error is not None:
            return ToolCall(call_id, self.name, raw, error, error, True, duration)
        return ToolCall(call_id, self.name, raw, result, result_content(result), False, duration)

    def run(self, call_id: str, raw: Any) -> ToolCall:
        """Run one call synchronously (an async function runs in its own event loop)."""
        started = time.perf_counter()
        args, error = self._arguments(raw)
        result = None
        if error is None and self.function is not None:
            try:
                result = self.function(**args)
                if inspect.isawaitable(result):
                    result = asyncio.run(_awaited(result))
            except Exception as exc:  # noqa: BLE001 - the tool is user code: any failure goes back to the model
                error = f"{type(exc).__name__}: {exc}"
        elif error is None:
            result = args
        return self._finish(call_id, raw, result, error, started)

    async def arun(self, call_id: str, raw: Any) -> ToolCall:
        """Run one call in an event loop (a sync function in a worker thread)."""
        started = time.perf_counter()
        args, error = self._arguments(raw)
        result = None
        if error is None and self.function is not None:
            try:
                if self.is_async:
                    result = await self.function(**args)
                else:
                    result = await asyncio.to_thread(self.function, **args)
                    if inspect.isawaitable(result):
                        result = await result
            except Exception as exc:  # noqa: BLE001 - as in run
                error = f"{type(exc).__name__}: {exc}"
        elif error is None:
            result = args
        return self._finish(call_id, raw, result, error, started)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def result_content(result: Any) -> Any:
    """What a tool's return value becomes in the ``tool_result``: text, or content blocks."""
    if result is None:
        return None
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    if (
        isinstance(result, list) and result
        and all(isinstance(b, Mapping) and b.get("type") in _RESULT_BLOCKS for b in result)
    ):  # fmt: skip
        return [dict(b) for b in result]
    return json.dumps(result, ensure_ascii=False, default=str)


# -- building tools ------------------------------------------------------------------------------


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a docstring's text and its ``Args:`` section."""
    text = inspect.cleandoc(doc or "")
    first = _SECTION.search(text)
    description = (text[: first.start()] if first else text).strip()
    params: dict[str, str] = {}
    for match in _SECTION.finditer(text):
        if match.group(1) not in ("Args", "Arguments", "Parameters", "Params"):
            continue
        body = text[match.end() :]
        after = _SECTION.search(body)
        last = None
        for line in (body[: after.start()] if after else body).splitlines():
            found = _PARAM.match(line)
            if found:
                last = found.group(1)
                params[last] = found.group(2).strip()
            elif last and line.strip():
                params[last] += " " + line.strip()
    for name, value in re.findall(r":param\s+(?:\w+\s+)?(\w+)\s*:\s*(.+)", text):
        params[name] = value.strip()
    return re.sub(r"\n*:param.*", "", description, flags=re.DOTALL).strip(), params


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in (schema.get("properties") or {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    return schema


def _from_function(fn: Callable[..., Any], name: str | None, description: str | None, strict: bool | None) -> Tool:
    doc, params = _doc_parts(fn.__doc__)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the raw ones
        hints = dict(getattr(fn, "__annotations__", {}))
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind is p.POSITIONAL_ONLY:
            raise InvalidConfigError(
                f"tool {fn.__name__!r}: parameter {p.name!r} is positional-only; tools take keywords"
            )
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), Field(default, description=params.get(p.name)))
    model = create_model(f"{fn.__name__}_input", **fields)
    return Tool(
        name or fn.__name__,
        description=description if description is not None else doc,
        input_schema=_schema(model),
        function=fn,
        model=model,
        strict=strict,
    )


def as_tool(obj: Any) -> Tool:
    """A :class:`Tool` from a function, a pydantic model class, a tool dict or a Tool."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        doc, _ = _doc_parts(obj.__doc__)
        return Tool(obj.__name__, description=doc, input_schema=_schema(obj), model=obj)
    if isinstance(obj, Mapping):
        name = obj.get("name")
        if not isinstance(name, str):
            raise InvalidConfigError(
                f"a tool dict needs a 'name' (and 'input_schema' for a custom tool), got {dict(obj)!r}"
            )
        schema = obj.get("input_schema")
        return Tool(name, description=str(obj.get("description", "")),
                    input_schema=schema if isinstance(schema, Mapping) else None, spec=obj)  # fmt: skip
    if callable(obj):
        return _from_function(obj, None, None, None)
    raise InvalidConfigError(f"a tool is a function, a pydantic model class or a tool dict, got {type(obj).__name__}")


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, strict: bool | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a :class:`Tool`: ``@convo.tool`` or ``@convo.tool(name=..., description=...)``.

    ``name`` defaults to the function's, ``description`` to its docstring; ``strict=True`` asks
    the API to guarantee input that fits the schema (strict tool use).
    """
    if fn is not None:
        return _from_function(fn, name, description, strict)
    return lambda f: _from_function(f, name, description, strict)


class ToolSet:
    """The tools of one request: their definitions, and the runner of each call."""

    def __init__(self, tools: Iterable[Any]) -> None:
        self.tools = [as_tool(t) for t in tools]
        names = [t.name for t in self.tools]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidConfigError(f"tool names must be unique; {twice} appear more than once")
        self.by_name = {t.name: t for t in self.tools}

    @classmethod
    def joined(cls, base: Iterable[Any], extra: Iterable[Any]) -> ToolSet | None:
        """The conversation's tools and a call's (the call's win a name clash); None if neither has any."""
        first, second = cls(base), cls(extra)
        tools = [t for t in first.tools if t.name not in second.by_name] + second.tools
        return cls(tools) if tools else None

    def __bool__(self) -> bool:
        return bool(self.tools)

    def to_api(self) -> list[dict[str, Any]]:
        """The request's ``tools`` list."""
        return [t.to_api() for t in self.tools]

    def can_run(self, calls: Sequence[tuple[str, str, Any]]) -> bool:
        """Whether convo runs every one of these ``(id, name, input)`` calls."""
        return bool(calls) and all(name in self.by_name and self.by_name[name].runnable for _, name, _ in calls)

    def run(self, calls: Sequence[tuple[str, str, Any]]) -> list[ToolCall]:
        """Run the calls, several at once in a thread pool; results in the calls' order."""
        if len(calls) == 1 and not self.by_name[calls[0][1]].is_async:  # an async one gets its own thread
            i, name, raw = calls[0]
            return [self.by_name[name].run(i, raw)]
        with ThreadPoolExecutor(max_workers=min(len(calls), 16), thread_name_prefix="convo-tool") as pool:
            return list(pool.map(lambda c: self.by_name[c[1]].run(c[0], c[2]), calls))

    async def arun(self, calls: Sequence[tuple[str, str, Any]]) -> list[ToolCall]:
        """Run the calls concurrently (``asyncio.gather``); results in the calls' order."""
        return list(await asyncio.gather(*(self.by_name[name].arun(i, raw) for i, name, raw in calls)))

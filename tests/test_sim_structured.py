"""Structured outputs in the simulator, through the official SDK: ``output_config.format``
answers are JSON valid for the schema (values drawn from the prompt), the deprecated
``output_format`` still works, models without the capability answer 400, and the Models API
and both catalogues agree on which models have it."""

from __future__ import annotations

import json
from enum import Enum

import anthropic
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from convo.models import Catalogue, lookup
from convo.sim.catalogue import catalogue

YES = catalogue().where(structured_outputs=True, thinking_always_on=False)
NO = catalogue().where(structured_outputs=False)
DOCS = "https://platform.claude.com/docs/en/build-with-claude/structured-outputs"


class Role(str, Enum):
    admin = "admin"
    engineer = "engineer"
    guest = "guest"


class Address(BaseModel):
    city: str
    zip_code: str


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=150)
    email: str
    role: Role
    tags: list[str]
    address: Address
    nickname: str | None = None


PROMPT = "Extract the contact: name: Ada Lovelace, age: 36, reach her at ada@example.org; role engineer. City: London."


@pytest.fixture
def client(sim):
    sim.faults = None
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as c:
        yield c


def ask(client, schema, text=PROMPT, *, model=None, field="output_config", **kw):
    fmt = {"type": "json_schema", "schema": schema}
    extra = {"output_config": {"format": fmt}} if field == "output_config" else {"output_format": fmt}
    kw.setdefault("max_tokens", 2000)
    return client.messages.create(model=model or YES.id, messages=[{"role": "user", "content": text}], extra_body=extra, **kw)


def test_the_answer_is_json_for_a_pydantic_schema_with_values_from_the_prompt(client):
    reply = ask(client, Person.model_json_schema())
    assert reply.stop_reason == "end_turn" and [b.type for b in reply.content] == ["text"]
    person = Person.model_validate_json(reply.content[0].text)
    assert (person.name, person.age, person.email, person.role) == ("Ada Lovelace", 36, "ada@example.org", Role.engineer)
    assert person.address.city == "London" and person.nickname is None and person.tags


def test_the_same_request_gets_the_same_json(client):
    assert ask(client, Person.model_json_schema()).content[0].text == ask(client, Person.model_json_schema()).content[0].text


def test_the_stream_spells_the_same_json(client):
    fmt = {"format": {"type": "json_schema", "schema": Person.model_json_schema()}}
    with client.messages.stream(model=YES.id, max_tokens=2000, messages=[{"role": "user", "content": PROMPT}],
                                extra_body={"output_config": fmt}) as stream:  # fmt: skip
        streamed = stream.get_final_message()
    assert streamed.content[0].text == ask(client, Person.model_json_schema()).content[0].text


def test_the_deprecated_output_format_is_still_accepted(client):
    reply = ask(client, Person.model_json_schema(), field="output_format")
    assert Person.model_validate_json(reply.content[0].text).name == "Ada Lovelace"


def test_both_spellings_at_once_and_bad_formats_are_400(client):
    fmt = {"type": "json_schema", "schema": {"type": "object"}}
    with pytest.raises(anthropic.BadRequestError, match="output_config.format"):
        client.messages.create(model=YES.id, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                               extra_body={"output_config": {"format": fmt}, "output_format": fmt})  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match=r"output_config\.format\.type"):
        client.messages.create(model=YES.id, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                               extra_body={"output_config": {"format": {"type": "json"}}})  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="schema"):
        client.messages.create(model=YES.id, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                               extra_body={"output_config": {"format": {"type": "json_schema"}}})  # fmt: skip


def test_models_without_the_capability_answer_400(client, sim):
    assert NO is not None, "the catalogue has no served model without structured outputs"
    sim.clear_requests()
    with pytest.raises(anthropic.BadRequestError) as err:
        ask(client, Person.model_json_schema(), model=NO.id)
    assert err.value.status_code == 400 and err.value.body["error"]["type"] == "invalid_request_error"
    assert "structured outputs are not supported" in str(err.value) and NO.id in str(err.value)
    with pytest.raises(anthropic.BadRequestError, match="output_format"):
        ask(client, Person.model_json_schema(), model=NO.id, field="output_format")


def test_effort_and_format_share_output_config(client):
    model = catalogue().where(structured_outputs=True, effort=True, thinking_always_on=False)
    if model is None:
        pytest.skip("no served model has both effort and structured outputs")
    fmt = {"type": "json_schema", "schema": Address.model_json_schema()}
    reply = client.messages.create(model=model.id, max_tokens=500, messages=[{"role": "user", "content": PROMPT}],
                                   extra_body={"output_config": {"format": fmt, "effort": "low"}})  # fmt: skip
    assert Address.model_validate_json(reply.content[0].text).city == "London"


def test_a_tool_call_comes_first_and_the_json_answers_the_results(client):
    weather = {"name": "get_weather", "description": "w", "strict": True,
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                                "additionalProperties": False}}  # fmt: skip
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "summary": {"type": "string"}},
              "required": ["city", "summary"], "additionalProperties": False}  # fmt: skip
    fmt = {"output_config": {"format": {"type": "json_schema", "schema": schema}}}
    ask_it = [{"role": "user", "content": "use get_weather for Paris"}]
    first = client.messages.create(model=YES.id, max_tokens=500, tools=[weather], messages=ask_it, extra_body=fmt)
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.input == {"city": "Paris"}
    history = [*ask_it, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                             "content": "summary: sunny and 21 C"}]}]  # fmt: skip
    final = client.messages.create(model=YES.id, max_tokens=500, tools=[weather], messages=history, extra_body=fmt)
    data = json.loads(final.content[0].text)
    jsonschema.validate(data, schema)
    assert data["summary"] == "sunny and 21 C" and final.stop_reason == "end_turn"


def test_max_tokens_cuts_the_json(client):
    reply = ask(client, Person.model_json_schema(), max_tokens=5)
    assert reply.stop_reason == "max_tokens"
    with pytest.raises(ValueError):
        json.loads(reply.content[0].text)


# -- any schema -------------------------------------------------------------------------------

_LEAF = st.one_of(
    st.just({"type": "string"}),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
              st.integers(-50, 50), st.integers(0, 20)),
    st.builds(lambda lo: {"type": "number", "exclusiveMinimum": lo}, st.integers(-5, 5)),
    st.builds(lambda vals: {"type": "string", "enum": vals}, st.lists(st.sampled_from(["red", "green", "blue", "Paris"]),
                                                                     min_size=1, max_size=3, unique=True)),
    st.builds(lambda n: {"type": "string", "minLength": n, "maxLength": n + 5}, st.integers(0, 30)),
    st.sampled_from([{"type": "string", "format": f} for f in ("email", "date", "date-time", "uri", "uuid")]),
    st.just({"const": "fixed"}),
)
_NAMES = st.sampled_from(["name", "city", "age", "count", "email", "color", "tags", "items", "note", "when_date"])


def _object(children):
    return st.builds(
        lambda props, data: {
            "type": "object", "properties": props, "additionalProperties": False,
            "required": [k for k in props if data.draw(st.booleans())],
        },
        st.dictionaries(_NAMES, children, min_size=1, max_size=4), st.data(),
    )  # fmt: skip


def _array(children):
    return st.builds(lambda items, lo: {"type": "array", "items": items, "minItems": lo, "maxItems": lo + 3},
                     children, st.integers(0, 3))  # fmt: skip


_SCHEMA = st.recursive(
    _LEAF,
    lambda kids: st.one_of(_object(kids), _array(kids), st.builds(lambda a, b: {"anyOf": [a, b]}, kids, kids)),
    max_leaves=12,
)
_PROMPTS = st.sampled_from([
    PROMPT, "name: Bob, color is green, count: 7, city: Oslo, when_date 2026-03-04", "请提取：城市：上海", "",
    "nothing useful here at all",
])  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.one_of(_object(_SCHEMA), _array(_SCHEMA)), _PROMPTS)
def test_every_answer_validates_against_its_schema(sim, schema, prompt):
    with anthropic.Anthropic(base_url=sim.base_url, api_key="test", max_retries=0) as client:
        reply = ask(client, schema, prompt or "go")
    jsonschema.validate(json.loads(reply.content[0].text), schema, format_checker=jsonschema.FormatChecker())


# -- the catalogues ---------------------------------------------------------------------------


def test_the_catalogues_and_the_models_api_agree_on_the_capability(client):
    for m in catalogue().served():
        info = lookup(m.id)
        assert info is not None and info.structured_outputs == m.structured_outputs
        assert client.models.retrieve(m.id).capabilities.structured_outputs.supported == m.structured_outputs
        assert DOCS in info.sources
        if not m.structured_outputs:  # the page does not name it: not confirmed either way
            assert "structured_outputs" in info.unverified


def test_a_models_api_refresh_sets_the_capability(client):
    listed = [m.model_dump(mode="json") for m in client.models.list(limit=1000)]
    flipped = [{**e, "capabilities": {**e["capabilities"], "structured_outputs": {"supported": True}}} for e in listed]
    merged = Catalogue.bundled().merged(flipped)
    assert all(merged.get(e["id"]).structured_outputs for e in flipped)
    assert Catalogue.bundled().merged(listed).get(NO.id).structured_outputs is False

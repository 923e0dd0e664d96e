"""The sync and async clients are twins: the same options, methods, parameters and settings."""

import inspect
import typing

import anthropic

from convo import AsyncClient, AsyncStream, Client, Stream
from convo.client import AsyncClientOptions, ClientOptions

#: Methods that return at once on both clients (a stream to iterate, a configured copy).
NOT_AWAITED = {"stream", "with_options"}
#: Context-manager protocol: ``with`` on the sync client, ``async with`` on the async one.
CONTEXT = {"__enter__": "__aenter__", "__exit__": "__aexit__"}


def public_methods(cls):
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def params(fn):
    """Each parameter's name, kind and default (annotations differ where the types are async)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_constructors_take_the_same_explicit_options():
    sync, asyn = params(Client.__init__), params(AsyncClient.__init__)
    assert sync == asyn
    assert all(kind is not inspect.Parameter.VAR_KEYWORD for _, kind, _ in sync)  # no hidden **kw
    names = {name for name, _, _ in sync} - {"self"}
    assert names == set(ClientOptions.__annotations__) | set(typing.get_type_hints(ClientOptions))
    assert set(typing.get_type_hints(ClientOptions)) == set(typing.get_type_hints(AsyncClientOptions)) == names


def test_every_public_sync_method_has_an_async_twin_with_the_same_parameters():
    sync, asyn = public_methods(Client), public_methods(AsyncClient)
    assert set(sync) == set(asyn)
    for name, fn in sync.items():
        twin = asyn[name]
        assert params(fn) == params(twin), name
        assert not inspect.iscoroutinefunction(fn), name
        assert inspect.iscoroutinefunction(twin) == (name not in NOT_AWAITED), name
    for sync_name, async_name in CONTEXT.items():
        assert params(getattr(Client, sync_name)) == params(getattr(AsyncClient, async_name))


def test_the_settings_are_the_same_and_equally_writable():
    def settings(cls):
        return {
            name: prop.fset is not None
            for name, prop in inspect.getmembers(cls, lambda m: isinstance(m, property))
        }

    assert settings(Client) == settings(AsyncClient)
    assert settings(Client)["retry"] and not settings(Client)["base_url"]


def test_create_is_typed_as_the_sdk_message():
    for cls in (Client, AsyncClient):
        hints = typing.get_type_hints(cls.create)
        assert hints["return"] is anthropic.types.Message, cls
    assert typing.get_type_hints(Client.stream)["return"] is Stream
    assert typing.get_type_hints(AsyncClient.stream)["return"] is AsyncStream


def test_the_stream_classes_are_twins():
    sync, asyn = public_methods(Stream), public_methods(AsyncStream)
    assert set(sync) == set(asyn)
    for name, fn in sync.items():
        assert params(fn) == params(asyn[name]), name
        assert inspect.iscoroutinefunction(asyn[name]), name
    assert typing.get_type_hints(Stream.get_final_message)["return"] is anthropic.types.Message
    assert typing.get_type_hints(AsyncStream.get_final_message)["return"] is anthropic.types.Message

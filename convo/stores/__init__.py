"""Conversation stores: conversations with an id and an owner, shared by every worker process.

>>> from convo.stores import SQLiteConversationStore
>>> store = SQLiteConversationStore("chats.db")          # or RedisConversationStore(url),
>>> conv = store.create("You are terse.", user="ada")     # PostgresConversationStore(dsn)
>>> conv.add_user("Hello")                                # written at once (an append)
>>> store.open(conv.id).messages[0].text
'Hello'

Each backend keeps one record per message, in the JSON of a saved conversation file
(:meth:`convo.Conversation.to_dict`), so a turn writes only what it adds, and opening a
conversation is one indexed read. Each conversation has a version: a handle whose version is
stale gets :class:`~convo.ConflictError` and writes nothing (``conv.reload()``, then retry).
"""

from ._base import ConversationStore
from ._records import ConversationInfo
from .postgres import PostgresConversationStore
from .redis import RedisConversationStore
from .sqlite import SQLiteConversationStore

__all__ = [
    "ConversationInfo",
    "ConversationStore",
    "PostgresConversationStore",
    "RedisConversationStore",
    "SQLiteConversationStore",
]

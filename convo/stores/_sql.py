"""What the two SQL backends (SQLite, PostgreSQL) share: the columns of a conversation's info, the
one statement that reads a conversation whole, its rows turned into a :class:`Stored`, and the
query of a page of the list. Each backend passes its table prefix and parameter marks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._records import ConversationInfo, Stored, when

__all__ = ["INFO", "info_of", "list_query", "read_query", "stored_of"]

INFO = "id, owner, metadata, created, updated, length, version"


def read_query(prefix: str, id_mark: str) -> str:
    """The header, message chunks and receipts of one conversation in one ordered result (kind 0, 1, 2)."""
    nulls = ", ".join(["NULL"] * 9)
    return (
        f"SELECT 0, 0, head, NULL, pins, summary, {INFO} FROM {prefix}conversations WHERE id = {id_mark}"
        f" UNION ALL SELECT 1, seq, body, tokens, {nulls} FROM {prefix}chunks WHERE conv = {id_mark}"
        f" UNION ALL SELECT 2, seq, body, NULL, {nulls} FROM {prefix}receipts WHERE conv = {id_mark} ORDER BY 1, 2"
    )


def info_of(row: Sequence[Any]) -> ConversationInfo:
    id, owner, metadata, created, updated, length, version = row
    return ConversationInfo(id, owner, json.loads(metadata), when(created), when(updated), length, version)


def stored_of(rows: Sequence[Sequence[Any]]) -> Stored | None:
    """The rows of :func:`read_query` as a Stored; None when the conversation is not there."""
    if not rows or rows[0][0] != 0:
        return None
    first = rows[0]
    chunks, counts, receipts = [], [], []
    for kind, _seq, body, n, *_ in rows:
        if kind == 1:
            chunks.append(body)
            counts.append(n)
        elif kind == 2:
            receipts.append(body)
    return Stored(info_of(first[6:]), first[2], first[4], first[5], chunks, receipts, counts)


def list_query(prefix: str, mark: str, user: str | None, after: str | None, limit: int) -> tuple[str, list[Any]]:
    """A page of conversations newest first (all, or ``user``'s, after the id ``after``)."""
    where, args = [], []
    if user is not None:
        where.append(f"owner = {mark}")
        args.append(user)
    if after is not None:
        where.append(f"id < {mark}")
        args.append(after)
    sql = f"SELECT {INFO} FROM {prefix}conversations"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY id DESC LIMIT {mark}", [*args, limit]

"""A Redis URL's passwords, found and hidden: what every Redis-backed piece (the cache, the
conversation store) shows of its URL in messages and reprs, and scrubs from the client's errors.
"""

from __future__ import annotations

import urllib.parse

__all__ = ["hide_password", "scrub", "secrets_in"]


def secrets_in(url: str) -> set[str]:
    """The passwords in a Redis URL (user info and ``?password=``), raw and percent-decoded."""
    try:
        parts = urllib.parse.urlsplit(url)
        found = {parts.password or ""}
        found |= {v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password"}
    except ValueError:
        return set()
    return {s for p in found for s in (p, urllib.parse.unquote(p)) if s}


def hide_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for messages and reprs."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user_info, host = netloc.rsplit("@", 1)
            netloc = f"{user_info.split(':', 1)[0]}:***@{host}" if ":" in user_info else f"***@{host}"
        query = urllib.parse.urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in urllib.parse.parse_qsl(parts.query)]
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def scrub(text: str, secrets: set[str]) -> str:
    """``text`` (an error from the Redis client) with each of ``secrets`` shown as ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text

"""API tokens: made at random, configured only as SHA-256 hashes, checked in constant time.

A token is a random string handed to one client once (`hotspots token new`). The server is told
`NAME:SHA256HEX[:EXPIRES]` entries (HOTSPOTS_API_TOKENS, comma-separated), so neither the
environment nor the configuration holds anything a client could present. Nothing here ever
puts a token into a message: errors name the entry (by position and name) and what is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Iterable

# The prefix lets secret scanners (and people) recognise a leaked token.
TOKEN_PREFIX = "hst_"
TOKEN_BYTES = 32
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class TokenConfigError(ValueError):
    """A malformed token entry in the configuration (the message never contains a hash or token)."""


@dataclass(frozen=True)
class TokenEntry:
    """One configured token: who holds it, the SHA-256 of the token, and when it stops working."""

    name: str
    sha256: str
    expires: datetime | None = None   # aware (UTC when the entry gave no offset)

    def entry(self) -> str:
        """The NAME:SHA256HEX[:EXPIRES] text to put into HOTSPOTS_API_TOKENS."""
        if self.expires is None:
            return f"{self.name}:{self.sha256}"
        return f"{self.name}:{self.sha256}:{self.expires.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"


class Verdict(Enum):
    """Outcome of checking a presented token."""

    VALID = "valid"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Check:
    """The verdict and, for a known token, its entry (by name: the token itself is not kept)."""

    verdict: Verdict
    entry: TokenEntry | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (what the configuration stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe, valid in a Bearer header)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def make_entry(name: str, token: str, days: int | None = None, now: datetime | None = None) -> TokenEntry:
    """The configuration entry for `token` held by `name`, expiring after `days` (None: never)."""
    if not NAME_PATTERN.match(name):
        raise TokenConfigError(f"token name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if days is not None and days < 1:
        raise TokenConfigError(f"days must be at least 1, got {days}")
    expires = None
    if days is not None:
        expires = (now or datetime.now(timezone.utc)).replace(microsecond=0) + timedelta(days=days)
    return TokenEntry(name, hash_token(token), expires)


def _parse_expiry(text: str, position: int, name: str) -> datetime:
    try:
        if re.match(r"^\d{4}-\d{2}-\d{2}$", text):
            # A bare date: the token works through that whole day (UTC).
            return datetime.combine(date.fromisoformat(text) + timedelta(days=1), time(0), timezone.utc)
        value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise TokenConfigError(f"token entry {position} ({name}): expiry {text!r} is not an ISO 8601 date or date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_tokens(config: str | Iterable[str] | None) -> tuple[TokenEntry, ...]:
    """Entries from 'NAME:SHA256HEX[:EXPIRES],...' (or an iterable of entries); TokenConfigError when malformed."""
    if not config:
        return ()
    parts = config.split(",") if isinstance(config, str) else list(config)
    entries: list[TokenEntry] = []
    for position, raw in enumerate(parts, start=1):
        text = raw.strip()
        if not text:
            continue
        # The expiry may contain ':' (ISO times), so split the name and hash off the front only.
        fields = text.split(":", 2)
        name = fields[0].strip()
        if not NAME_PATTERN.match(name):
            raise TokenConfigError(f"token entry {position}: name must be 1-64 letters, digits, '_', '.' or '-' "
                                   "(format NAME:SHA256HEX[:EXPIRES])")
        if len(fields) < 2 or not _HEX64.match(fields[1].strip().lower()):
            raise TokenConfigError(f"token entry {position} ({name}): expected NAME:SHA256HEX[:EXPIRES] with 64 hex "
                                   "digits (the SHA-256 of the token, as `hotspots token new` prints it)")
        expires = _parse_expiry(fields[2].strip(), position, name) if len(fields) == 3 and fields[2].strip() else None
        if any(e.name == name for e in entries):
            raise TokenConfigError(f"token entry {position}: the name {name!r} is used twice")
        entries.append(TokenEntry(name, fields[1].strip().lower(), expires))
    return tuple(entries)


def verify(token: str, entries: Iterable[TokenEntry], now: datetime | None = None) -> Check:
    """Check a presented token against the configured hashes.

    Every entry is compared (hmac.compare_digest, no early exit), so the time taken does not
    tell how much of a hash matched or which entry did.
    """
    digest = hash_token(token)
    found: TokenEntry | None = None
    for entry in entries:
        if hmac.compare_digest(digest, entry.sha256) and found is None:
            found = entry
    if found is None:
        return Check(Verdict.UNKNOWN)
    if found.expires is not None and (now or datetime.now(timezone.utc)) >= found.expires:
        return Check(Verdict.EXPIRED, found)
    return Check(Verdict.VALID, found)

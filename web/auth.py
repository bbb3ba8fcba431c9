"""Bearer tokens for Flask: the Authorization header read per RFC 6750, and the optional read-token hook.

Writes (POST /api/calls) always need a token. Reads are open unless REQUIRE_READ_TOKEN is set, in
which case every request except /health and static assets needs one too.

Status codes, the same everywhere: no token (or a malformed Authorization header) -> 401 with
`WWW-Authenticate: Bearer`; a token that is unknown or expired -> 403 (with error="invalid_token"
in the challenge, so RFC 6750 clients still learn why). A token never appears in a response or
a log line; logs name the token's holder (the entry name) at most.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, current_app, g, request

from geo.auth import TokenConfigError, TokenEntry, Verdict, parse_tokens, verify
from web.errors import ApiError

log = logging.getLogger("web.auth")

REALM = "cmpd-hotspots"
# Reachable without a token even when reads need one: the load balancer's probe and static files.
OPEN_PATHS = frozenset({"/health"})
OPEN_PREFIXES = ("/static/", "/vendor/")
# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)


def init_app(app: Flask) -> None:
    """Read the configured token hashes (refusing a malformed entry at start) and install the read hook."""
    try:
        entries = parse_tokens(app.config.get("API_TOKENS"))
    except TokenConfigError as exc:
        # Raised at start-up, not per request: a typo must not silently lock clients out.
        raise RuntimeError(f"HOTSPOTS_API_TOKENS / API_TOKENS: {exc}") from None
    app.extensions["hotspots_tokens"] = entries
    if app.config.get("REQUIRE_READ_TOKEN") and not entries:
        log.warning("REQUIRE_READ_TOKEN is on but no API tokens are configured: every request except /health is refused")
    app.before_request(_read_token_hook)


def _challenge(error: str | None = None, description: str | None = None) -> dict:
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return {"WWW-Authenticate": value}


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer ...` header; None without the header; 401 when malformed."""
    header = request.headers.get("Authorization")
    if header is None or not header.strip():
        return None
    match = _BEARER.match(header.strip())
    if not match:
        # Say what shape is expected; never echo the header (it may hold a secret).
        raise ApiError(401, 'the Authorization header must be "Bearer <token>"', "Authorization",
                       _challenge("invalid_request", "malformed Authorization header"))
    return match.group(1)


def require_token() -> TokenEntry:
    """The entry of the request's valid token, else 401 (none given) or 403 (unknown or expired)."""
    cached = g.get("api_token")
    if cached is not None:
        return cached
    token = bearer_token()
    if token is None:
        raise ApiError(401, "this endpoint needs an API token: send Authorization: Bearer <token>",
                       "Authorization", _challenge())
    check = verify(token, current_app.extensions["hotspots_tokens"])
    if check.verdict is Verdict.EXPIRED:
        log.warning("refused %s %s: expired token of %s", request.method, request.path, check.entry.name)
        raise ApiError(403, "the API token has expired; ask for a new one (`hotspots token new`)",
                       "Authorization", _challenge("invalid_token", "the token has expired"))
    if not check.ok:
        log.warning("refused %s %s: unknown token from %s", request.method, request.path, request.remote_addr)
        raise ApiError(403, "the API token is not valid", "Authorization",
                       _challenge("invalid_token", "the token is not valid"))
    g.api_token = check.entry
    return check.entry


def _open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _read_token_hook() -> None:
    if current_app.config.get("REQUIRE_READ_TOKEN") and not _open_path(request.path):
        require_token()

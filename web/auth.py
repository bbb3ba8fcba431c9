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

from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, make_response, redirect, render_template, request

from geo.auth import TokenConfigError, TokenEntry, Verdict, parse_tokens, verify
from web.errors import ApiError

log = logging.getLogger("web.auth")

REALM = "cmpd-hotspots"
# Reachable without a token even when reads need one: the load balancer's probe, static files and
# the sign-in page itself.
OPEN_PATHS = frozenset({"/health", "/login", "/logout"})
# Browsers cannot add an Authorization header to tile and page requests, so when reads need a token
# the map page signs in once and the token travels in this cookie (HttpOnly: scripts never see it;
# SameSite=Strict: other sites cannot ride on it). The cookie is honoured for reads only: writes
# still need the header, so a forged form post gets nothing.
COOKIE = "hotspots_token"

bp = Blueprint("auth", __name__)
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
    app.register_blueprint(bp)


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


def require_token(*, allow_cookie: bool = False) -> TokenEntry:
    """The entry of the request's valid token, else 401 (none given) or 403 (unknown or expired).

    `allow_cookie`: also accept the sign-in cookie (reads only; see COOKIE).
    """
    cached = g.get("api_token")
    if cached is not None:
        return cached
    token = bearer_token()
    if token is None and allow_cookie and request.method in ("GET", "HEAD"):
        token = request.cookies.get(COOKIE) or None
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


def _read_token_hook():
    if current_app.config.get("REQUIRE_READ_TOKEN") and not _open_path(request.path):
        # A person opening the map without a token is sent to sign in; API clients get the 401.
        if (request.path == "/" and request.method == "GET" and "Authorization" not in request.headers
                and not request.cookies.get(COOKIE)):
            return redirect("/login?next=" + _local_target(request.full_path), 303)
        require_token(allow_cookie=True)
    return None


def _local_target(target: str | None) -> str:
    """`target` if it is a path on this server, else '/' (no open redirect to another site)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target.rstrip("?") or "/"


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in a browser for the map when reads need a token: the token is kept in an HttpOnly cookie."""
    target = _local_target(request.values.get("next"))
    if request.method == "GET":
        return render_template("auth/login.html", next=target, error=None)
    token = (request.form.get("token") or "").strip()
    check = verify(token, current_app.extensions["hotspots_tokens"]) if token else None
    if check is None or not check.ok:
        why = "enter a token" if check is None else ("the token has expired" if check.verdict is Verdict.EXPIRED
                                                    else "the token is not valid")
        if check is not None:
            log.warning("sign-in refused from %s: %s", request.remote_addr, check.verdict.value)
        return render_template("auth/login.html", next=target, error=why), 403 if check else 400
    resp = make_response(redirect(target, 303))
    max_age = None
    if check.entry.expires is not None:
        from datetime import datetime, timezone

        max_age = max(0, int((check.entry.expires - datetime.now(timezone.utc)).total_seconds()))
    resp.set_cookie(COOKIE, token, max_age=max_age, httponly=True, samesite="Strict", secure=request.is_secure, path="/")
    log.info("browser signed in as %s", check.entry.name)
    return resp


@bp.get("/logout")
def logout():
    """Forget the sign-in cookie."""
    resp = make_response(redirect("/login", 303))
    resp.delete_cookie(COOKIE, path="/")
    return resp

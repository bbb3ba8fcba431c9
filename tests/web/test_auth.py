"""Tokens: hashes only in the configuration, 401/403 as documented, never a token in a log, the read-token option."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from geo.auth import TokenConfigError, TokenEntry, Verdict, hash_token, make_entry, new_token, parse_tokens, verify
from geo.cli import main as cli
from tests.servers import gunicorn_argv, running_server
from tests.web.conftest import LiveServer
from web import create_app

TOKEN = new_token()
EXPIRED = new_token()
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
TOKENS = ",".join([make_entry("cad", TOKEN).entry(),
                   TokenEntry("old-feed", hash_token(EXPIRED), datetime(2021, 1, 1, tzinfo=timezone.utc)).entry()])


# --- geo.auth --------------------------------------------------------------------------------------
def test_entries_parse_with_and_without_expiry():
    sha = hash_token("x")
    entries = parse_tokens(f" a:{sha} , b:{sha.upper()}:2026-06-30T12:00:00+02:00, c:{sha}:2026-06-30,")
    assert [e.name for e in entries] == ["a", "b", "c"]
    assert entries[0].expires is None and entries[1].sha256 == sha
    assert entries[1].expires == datetime(2026, 6, 30, 10, tzinfo=timezone.utc)
    assert entries[2].expires == datetime(2026, 7, 1, tzinfo=timezone.utc)   # a date: through that whole day
    assert parse_tokens(entries[1].entry()) == (entries[1],)


@pytest.mark.parametrize("config, fragment", [
    ("nohash", "entry 1"),
    ("a:1234", "64 hex"),
    (f"a b:{'0' * 64}", "name"),
    (f"a:{'0' * 64}:someday", "expiry"),
    (f"a:{'0' * 64},a:{'1' * 64}", "used twice"),
])
def test_malformed_entries_are_refused_without_echoing_hashes(config, fragment):
    with pytest.raises(TokenConfigError) as err:
        parse_tokens(config)
    assert fragment in str(err.value) and "0" * 64 not in str(err.value) and "1234" not in str(err.value)


def test_verify_valid_unknown_expired():
    entries = parse_tokens(TOKENS)
    assert verify(TOKEN, entries, NOW).verdict is Verdict.VALID and verify(TOKEN, entries, NOW).entry.name == "cad"
    assert verify(TOKEN + "x", entries, NOW).verdict is Verdict.UNKNOWN
    assert verify(EXPIRED, entries, NOW).verdict is Verdict.EXPIRED
    assert verify(EXPIRED, entries, datetime(2020, 12, 31, tzinfo=timezone.utc)).ok
    entry = make_entry("soon", TOKEN, days=2, now=NOW)
    assert entry.expires == NOW + timedelta(days=2)
    assert verify(TOKEN, [entry], NOW + timedelta(days=2)).verdict is Verdict.EXPIRED


def test_cli_token_new_prints_a_token_that_verifies_against_the_printed_entry():
    result = CliRunner().invoke(cli, ["token", "new", "--name", "cad-feed", "--days", "30"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    token = lines[lines.index(next(l for l in lines if l.startswith("token"))) + 1]
    entry = lines[lines.index(next(l for l in lines if l.startswith("entry"))) + 1]
    assert token.startswith("hst_") and len(token) > 40
    parsed = parse_tokens(entry)
    assert parsed[0].name == "cad-feed" and token not in entry
    assert parsed[0].expires - datetime.now(timezone.utc) > timedelta(days=29)
    assert verify(token, parsed).ok
    bad = CliRunner().invoke(cli, ["token", "new", "--name", "has space"])
    assert bad.exit_code != 0 and "name" in bad.output


def test_cli_token_list_names_entries_but_not_hashes(monkeypatch):
    monkeypatch.setenv("HOTSPOTS_API_TOKENS", TOKENS)
    result = CliRunner().invoke(cli, ["token", "list"])
    assert result.exit_code == 0
    assert "cad: never expires" in result.output and "old-feed: expired" in result.output
    assert hash_token(TOKEN) not in result.output


# --- the write endpoint ------------------------------------------------------------------------------
@pytest.fixture
def token_app(web_url):
    """The read-only served database is enough: refused requests never write."""
    return create_app({"DATABASE_URL": web_url, "TESTING": True, "API_TOKENS": TOKENS})


def _post(client, headers=None):
    return client.post("/api/calls", data=json.dumps([]), content_type="application/json", headers=headers or {})


def test_missing_token_is_401_with_a_bearer_challenge(token_app):
    r = _post(token_app.test_client())
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="cmpd-hotspots"'
    assert r.get_json()["code"] == "Unauthorized" and r.get_json()["parameter"] == "Authorization"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer two words", "Token abc"])
def test_malformed_authorization_is_401_invalid_request(token_app, header):
    r = _post(token_app.test_client(), {"Authorization": header})
    assert r.status_code == 401 and 'error="invalid_request"' in r.headers["WWW-Authenticate"]
    assert header.split(" ")[-1] not in r.get_data(as_text=True) or header == "Bearer"


def test_wrong_token_is_403(token_app):
    r = _post(token_app.test_client(), {"Authorization": f"Bearer {new_token()}"})
    assert r.status_code == 403
    assert r.get_json()["code"] == "Forbidden" and 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_expired_token_is_403_and_says_so(token_app):
    r = _post(token_app.test_client(), {"Authorization": f"Bearer {EXPIRED}"})
    assert r.status_code == 403 and "expired" in r.get_json()["description"]


def test_valid_token_passes_the_check(token_app):
    # An empty batch is the first thing the endpoint refuses after the token: 400, not 401/403.
    r = _post(token_app.test_client(), {"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400 and r.get_json()["parameter"] == "calls"


def test_malformed_configuration_stops_the_app_at_start():
    with pytest.raises(RuntimeError) as err:
        create_app({"TESTING": True, "API_TOKENS": "cad:not-a-hash"})
    assert "API_TOKENS" in str(err.value) and "not-a-hash" not in str(err.value)


def test_tokens_never_reach_the_logs_over_real_http(writable_url, caplog):
    """Real HTTP requests (werkzeug's server logs each request line) with good, wrong and expired tokens."""
    caplog.set_level(logging.DEBUG)
    app = create_app({"DATABASE_URL": writable_url, "API_TOKENS": TOKENS})
    wrong = new_token()
    bodies = []
    with LiveServer(app) as server:
        for token, body in ((TOKEN, [{"call_id": "LOG-1", "received_at": "2021-12-01T10:00:00Z", "call_type": "ASSAULT",
                                      "lon": -80.8431, "lat": 35.2271}]),
                            (TOKEN, [{"call_id": "LOG-2", "received_at": "nope"}]),
                            (wrong, []), (EXPIRED, []), (f"{TOKEN} extra", [])):
            req = urllib.request.Request(server.url + "/api/calls?note=1", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    bodies.append((resp.status, resp.read().decode()))
            except urllib.error.HTTPError as exc:
                bodies.append((exc.code, exc.read().decode()))
    assert [status for status, _ in bodies] == [201, 200, 403, 403, 401]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "POST /api/calls" in logged           # the requests were logged ...
    assert "cad" in logged and "old-feed" in logged   # ... naming the holders of known tokens ...
    for secret in (TOKEN, EXPIRED, wrong, hash_token(TOKEN), hash_token(EXPIRED)):
        assert secret not in logged              # ... but never a token or its hash
        assert all(secret not in text for _, text in bodies)


# --- the read-token option -----------------------------------------------------------------------
@pytest.fixture
def locked_app(web_url):
    return create_app({"DATABASE_URL": web_url, "TESTING": True, "API_TOKENS": TOKENS, "REQUIRE_READ_TOKEN": True})


@pytest.mark.parametrize("path", ["/ogc", "/api/config", "/ogc/collections/calls/items?limit=1", "/tiles/calls/10/282/407.pbf",
                                  "/export/divisions.geojson", "/api", "/no/such/page"])
def test_read_token_option_refuses_reads_without_a_token(locked_app, path):
    client = locked_app.test_client()
    r = client.get(path)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(path, headers={"Authorization": f"Bearer {EXPIRED}"}).status_code == 403


def test_read_token_option_lets_valid_tokens_health_and_static_through(locked_app):
    client = locked_app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/health").status_code == 200
    assert client.get("/vendor/leaflet/leaflet.js").status_code == 200
    assert client.get("/ogc", headers=auth).status_code == 200
    assert client.get("/api/config", headers=auth).status_code == 200
    assert client.get("/api", headers=auth).status_code == 200


def test_browsers_sign_in_once_and_read_with_the_cookie(locked_app):
    from web.auth import COOKIE

    client = locked_app.test_client()
    r = client.get("/?division=01&zoom=12")
    assert r.status_code == 303 and r.headers["Location"].startswith("/login?next=/?division%3D01") is False
    assert r.headers["Location"].startswith("/login?next=/") and "division=01" in r.headers["Location"]
    assert client.get("/login").status_code == 200
    assert client.post("/login", data={"token": "nonsense", "next": "/"}).status_code == 403
    assert client.post("/login", data={"token": EXPIRED, "next": "/"}).status_code == 403
    assert client.get("/api/config").status_code == 401           # nothing was set by the failures
    # An outside `next` is not followed (no open redirect).
    r = client.post("/login", data={"token": TOKEN, "next": "https://evil.example/x"})
    assert r.status_code == 303 and r.headers["Location"] == "/"
    cookie = client.get_cookie(COOKIE)
    assert cookie.http_only and cookie.same_site == "Strict" and cookie.value == TOKEN
    assert client.get("/").status_code == 200
    assert client.get("/api/config").status_code == 200
    assert client.get("/tiles/divisions/10/282/407.pbf").status_code in (200, 204)
    # The cookie never authorises a write: posts still need the header.
    assert client.post("/api/calls", json={"calls": []}).status_code == 401
    assert client.get("/logout").status_code == 303
    assert client.get("/api/config").status_code == 401


def test_reads_are_open_by_default(token_app):
    client = token_app.test_client()
    assert client.get("/ogc").status_code == 200 and client.get("/api").status_code == 200


def test_tokens_never_reach_gunicorn_logs(writable_url, tmp_path):
    """The production server (as `hotspots serve` runs it), its access and error logs at debug level."""
    log_file = tmp_path / "gunicorn.log"
    argv = gunicorn_argv(workers=1, threads=2, extra=("--access-logfile", str(log_file), "--error-logfile",
                                                      str(log_file), "--log-level", "debug", "--capture-output"))
    with running_server(argv, {"DATABASE_URL": writable_url, "HOTSPOTS_API_TOKENS": TOKENS}, timeout_s=30) as (url, _):
        statuses = []
        for token in (TOKEN, EXPIRED, new_token()):
            body = json.dumps([{"call_id": "GU-1", "received_at": "2021-12-01T10:00:00Z", "call_type": "ASSAULT",
                                "lon": -80.8431, "lat": 35.2271}]).encode()
            req = urllib.request.Request(url + "/api/calls", data=body, method="POST",
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    statuses.append(resp.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
    assert statuses == [201, 403, 403]
    logged = log_file.read_text()
    assert logged.count("POST /api/calls") >= 3     # access lines (and debug lines) for each request
    assert TOKEN not in logged and EXPIRED not in logged and hash_token(TOKEN) not in logged

"""Every provider's answers, classified by its one table (`bridges.http.Table`):
success, retry with backoff, rate limited, held (a setting to fix) or
invalid. Each row goes through the provider's own reading of a real
`httpx.Response` first, as the client does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from bridges.errors import (
    AuthFailed,
    BridgeError,
    CredentialsRefused,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)
from bridges.http import HTTP_RULES, NOT_JSON, Answer, Decision, decision_of, json_or, retry_after
from bridges.iqstore import client as iqstore
from bridges.omnidesk import client as omnidesk
from bridges.plusofon import client as plusofon
from bridges.zenlix import client as zenlix
from bridges.zenlix.client import ListUnreadable

URL = "http://desk.test/api/x"
S, R, L, H, INV = (Decision.SUCCESS, Decision.RETRY, Decision.RATE_LIMITED, Decision.HELD,
                   Decision.INVALID)


def response(status: int, body: Any = None, *, text: str | None = None,
             **headers: str) -> httpx.Response:
    request = httpx.Request("POST", URL)
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


def check(error: BridgeError | None, decision: Decision, kind: type[BridgeError] | None,
          setting: str | None, provider: str) -> None:
    assert decision_of(error) is decision
    if kind is None:
        assert error is None
        return
    assert type(error) is kind and error is not None and error.provider == provider
    assert getattr(error, "setting", None) == setting
    if setting:
        assert setting in str(error)  # the operator is told what to check


# -- Omnidesk ------------------------------------------------------------------------

OMNIDESK = [
    ("ok", response(200, {"case": {}}), S, None, None),
    ("created", response(201, {"message": {}}), S, None, None),
    ("ok, empty body", response(200, text=""), S, None, None),
    ("wrong API key (401)", response(401, {"error": "wrong_api_key_or_email"}), H,
     CredentialsRefused, "OMNIDESK_API_KEY"),
    ("401 plain text", response(401, text="Unauthorized"), H, CredentialsRefused,
     "OMNIDESK_API_KEY"),
    ("wrong staff e-mail (403)", response(403, text="Forbidden"), H, CredentialsRefused,
     "OMNIDESK_STAFF_EMAIL"),
    ("wrong staff e-mail (403, JSON)", response(403, {"error": "wrong_staff_email"}), H,
     CredentialsRefused, "OMNIDESK_STAFF_EMAIL"),
    ("403 empty", response(403, text=""), H, CredentialsRefused, "OMNIDESK_STAFF_EMAIL"),
    ("429", response(429, {"error": "rate limit exceeded"}, retry_after="17"), L, RateLimited,
     None),
    ("429 Retry-After", response(429, text="slow down", **{"Retry-After": "3"}), L,
     RateLimited, None),
    ("403 rate limit exceeded", response(403, text="rate limit exceeded"), L, RateLimited, None),
    ("403 Rate Limit Exceeded", response(403, text="Rate Limit Exceeded\n"), L, RateLimited,
     None),
    ("403 rate_limit_exceeded", response(403, {"error": "rate_limit_exceeded"}), L,
     RateLimited, None),
    ("403 API rate limit exceeded", response(403, {"error": "API rate limit exceeded"}), L,
     RateLimited, None),
    ("403 ratelimit", response(403, text="RateLimit reached"), L, RateLimited, None),
    ("403 too many requests", response(403, text="Too Many Requests"), L, RateLimited, None),
    ("404 case_not_found", response(404, {"error": "case_not_found"}), INV, NotFound, None),
    ("400 case_not_found", response(400, {"error": "case_not_found"}), INV, NotFound, None),
    ("200 case_not_found", response(200, {"error": "case_not_found"}), INV, NotFound, None),
    ("400 user_not_found", response(400, {"error": "user_not_found"}), INV, NotFound, None),
    ("400 email_already_exist", response(400, {"error": "email_already_exist"}), INV, Invalid,
     None),
    ("400 wrong_email", response(400, {"error": "wrong_email"}), INV, Invalid, None),
    ("422 empty_content", response(422, {"error": "empty_content"}), INV, Invalid, None),
    ("200 with another error code", response(200, {"error": "odd"}), INV, Invalid, None),
    ("403 staff_has_not_access", response(403, {"error": "staff_has_not_access"}), INV,
     Forbidden, None),
    ("400 staff_not_active", response(400, {"error": "staff_not_active"}), INV, Forbidden, None),
    ("200 not JSON", response(200, text="<html>maintenance</html>"), R, Unavailable, None),
    ("500", response(500, {"error": "internal_error"}), R, Unavailable, None),
    ("502 HTML", response(502, text="<html>Bad Gateway</html>"), R, Unavailable, None),
    ("503 empty", response(503, text=""), R, Unavailable, None),
    ("302", response(302, text=""), R, Unavailable, None),
]


@pytest.mark.parametrize(("answer", "decision", "kind", "setting"),
                         [case[1:] for case in OMNIDESK], ids=[case[0] for case in OMNIDESK])
def test_omnidesk_table(answer: httpx.Response, decision: Decision,
                        kind: type[BridgeError] | None, setting: str | None) -> None:
    error = omnidesk.TABLE.classify(omnidesk.answer_of(answer), where="GET cases/1.json")
    check(error, decision, kind, setting, "omnidesk")
    if isinstance(error, RateLimited):
        assert error.retry_after == retry_after(answer.headers)
    if error is not None:
        assert "GET cases/1.json" in str(error)


# -- Zenlix ---------------------------------------------------------------------------


def wrapped(**fields: object) -> str:
    return json.dumps([fields]) + "    "


ZENLIX = [
    ("ok", "ticket_list", response(200, text=wrapped(status="ok", tickets=[])), S, None, None),
    ("auth ok (a bare object)", "auth",
     response(200, text=json.dumps({"status": "ok", "uniq_id": "k"}) + "    "), S, None, None),
    ("sign-in refused (a random uniq_id anyway)", "auth",
     response(200, text=json.dumps({"status": "error", "uniq_id": "x" * 32,
                                    "error_description": "system auth error"})), H,
     CredentialsRefused, zenlix.CREDENTIALS),
    ("key refused", "get_unit_list",
     response(200, text=wrapped(status="error", error_description="system auth error")), H,
     CredentialsRefused, zenlix.CREDENTIALS),
    ("key refused (another 2.x spelling)", "ticket_view",
     response(200, text=wrapped(status="error", error_description="validate error")), H,
     CredentialsRefused, zenlix.CREDENTIALS),
    ("proxy 401", "ticket_list", response(401, text="no"), H, CredentialsRefused,
     "ZENLIX_BASE_URL"),
    ("proxy 403", "ticket_list", response(403, text="forbidden"), H, CredentialsRefused,
     "ZENLIX_BASE_URL"),
    ("no privileges", "ticket_unlock",
     response(200, text=wrapped(status="error", error_description="you have no priviliges",
                                status_ticket="lock_by_other", access_priv="no_priv")), INV,
     Forbidden, None),
    ("unknown client", "create_ticket",
     response(200, text=wrapped(status="error", error_description="error data in fields")), INV,
     Invalid, None),
    ("unknown mode", "get_ticket_comments ",
     response(200, text=wrapped(status="error", error_description="mode-param is not valid")),
     INV, Invalid, None),
    ("missing parameters", "refer_ticket",
     response(200, text=wrapped(status="error", error_description="not all params")), INV,
     Invalid, None),
    ("some other error text", "ticket_ok",
     response(200, text=wrapped(status="error", error_description="something odd")), INV,
     Invalid, None),
    ("unknown ticket", "ticket_view",
     response(200, text=wrapped(status=None, error_description=None)), INV, NotFound, None),
    ("whitespace only: not understood", "get_unit_list", response(200, text="    "), INV,
     Invalid, None),
    ("ticket_list whitespace only: not encodable", "ticket_list", response(200, text="    "),
     R, ListUnreadable, None),
    ("strict MariaDB failure: 500, empty body", "add_ticket_comment", response(500, text=""),
     R, Unavailable, None),
    ("proxy 502", "ticket_list", response(502, text="<html>Bad gateway</html>"), R,
     Unavailable, None),
    ("unknown path: HTML with 200", "ticket_list",
     response(200, text="<!DOCTYPE html><html>404</html>"), R, Unavailable, None),
    ("wrong base path (404)", "ticket_list", response(404, text="not found"), R, Unavailable,
     None),
    ("empty array", "ticket_list", response(200, text="[]"), R, Unavailable, None),
    ("rate limited by a proxy", "ticket_list",
     response(429, text="", **{"retry-after": "7"}), L, RateLimited, None),
]


@pytest.mark.parametrize(("mode", "answer", "decision", "kind", "setting"),
                         [case[1:] for case in ZENLIX], ids=[case[0] for case in ZENLIX])
def test_zenlix_table(mode: str, answer: httpx.Response, decision: Decision,
                      kind: type[BridgeError] | None, setting: str | None) -> None:
    try:
        zenlix.interpret(mode, answer)
        error = None
    except BridgeError as raised:
        error = raised
    check(error, decision, kind, setting, "zenlix")
    if isinstance(error, RateLimited):
        assert error.retry_after == 7.0


@pytest.mark.parametrize("outcome", [
    httpx.ReadTimeout("slow", request=httpx.Request("POST", URL)),
    httpx.ConnectError("refused", request=httpx.Request("POST", URL))])
def test_zenlix_no_answer_is_retried(outcome: httpx.HTTPError) -> None:
    with pytest.raises(Unavailable) as raised:
        zenlix.interpret("ticket_list", outcome)
    assert decision_of(raised.value) is R


# -- Plusofon --------------------------------------------------------------------------

NOT_FOUND_DUMP = ("HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Type: text/html\r\n\r\n"
                  "Ticket not Found")
GET, LOGIN, ATTACH = "GET api/v1/ticket/7", plusofon.LOGIN, plusofon.ATTACH
PLUSOFON = [
    ("list", GET, response(200, {"ticket": {}}), S, None, None),
    ("created", "POST api/v1/ticket", response(201, {"id": "1", "posts": []}), S, None, None),
    ("not JSON", GET, response(200, text="<html>"), R, Unavailable, None),
    ("bad state", GET, response(400, {"message": "Undefined index: all", "code": 400}), INV,
     Invalid, None),
    ("missing field", "POST api/v1/ticket",
     response(400, {"message": "The subject field is required", "code": 400}), INV, Invalid,
     None),
    ("422", ATTACH, response(422, {"message": "The ticketId field is required", "code": 422}),
     INV, Invalid, None),
    ("ticket not found: the 500 dump", GET,
     response(500, {"message": NOT_FOUND_DUMP, "code": 500}), INV, NotFound, None),
    ("the body's code wins over 200", GET,
     response(200, {"message": NOT_FOUND_DUMP, "code": 500}), INV, NotFound, None),
    ("token refused", GET, response(401, {"message": "Unauthenticated.", "code": 401}), H,
     CredentialsRefused, plusofon.TABLE.credentials),
    ("account refused", GET, response(403, {"message": "Forbidden", "code": 403}), H,
     CredentialsRefused, plusofon.TABLE.credentials),
    ("sign-in refused", LOGIN, response(401, {"message": "Invalid credentials", "code": 401}),
     H, CredentialsRefused, "PLUSOFON_EMAIL or PLUSOFON_PASSWORD"),
    ("sign-in refused (422)", LOGIN, response(422, {"message": "The email must be valid"}), H,
     CredentialsRefused, "PLUSOFON_EMAIL or PLUSOFON_PASSWORD"),
    ("sign-in failing (500)", LOGIN, response(500, {"message": "oops"}), R, Unavailable, None),
    ("404", GET, response(404, {"message": "", "code": 404}), INV, NotFound, None),
    ("no access to a contract (500)", GET,
     response(500, {"message": "Нет доступа к договору", "code": 500}), INV, Forbidden, None),
    ("500", GET, response(500, {"message": "Internal Server Error", "code": 500}), R,
     Unavailable, None),
    ("502", GET, response(502, text="bad gateway"), R, Unavailable, None),
    ("302", GET, response(302, text=""), R, Unavailable, None),
    ("429", GET, response(429, {"message": "Too Many Attempts.", "code": 429},
                          **{"Retry-After": "7"}), L, RateLimited, None),
    ("attachment: success", ATTACH, response(200, {"success": True}), S, None, None),
    ("attachment: refused", ATTACH, response(200, {"success": False, "message": "too big"}), INV,
     Invalid, None),
    ("attachment: post not found", ATTACH, response(200, {"message": "Post not Found"}), INV,
     NotFound, None),
    ("attachment: nothing said", ATTACH, response(200, {}), INV, Invalid, None),
]


@pytest.mark.parametrize(("call", "answer", "decision", "kind", "setting"),
                         [case[1:] for case in PLUSOFON], ids=[case[0] for case in PLUSOFON])
def test_plusofon_table(call: str, answer: httpx.Response, decision: Decision,
                        kind: type[BridgeError] | None, setting: str | None) -> None:
    body = json_or(answer, NOT_JSON)
    error = plusofon.TABLE.classify(plusofon.answer_of(answer, body, call=call), where=call)
    check(error, decision, kind, setting, "plusofon")
    if isinstance(error, RateLimited):
        assert error.retry_after == 7.0
    if "Ticket not Found" in str(body):  # the dump, kept short and on one line
        assert str(error).endswith("Ticket not Found)") and "\r" not in str(error)


# -- iqstore ---------------------------------------------------------------------------


def envelope(ok: object, code: str | None = None) -> dict[str, Any]:
    return {"OK": ok, "Error": {"Code": code, "Text": "details"} if code else None,
            "Result": None}


SEND, APP = "chats/channel/send/support", "api/tickets/create_message"
IQSTORE = [
    ("ok", SEND, response(200, envelope(True)), S, None, None),
    ("not_found", SEND, response(200, envelope(False, "not_found")), INV, NotFound, None),
    ("forbidden", SEND, response(200, envelope(False, "forbidden")), INV, Forbidden, None),
    ("a customer's session refused", SEND, response(200, envelope(False, "unauthorized")), R,
     AuthFailed, None),
    ("invalid", SEND, response(200, envelope(False, "invalid")), INV, Invalid, None),
    ("bad_request", SEND, response(200, envelope(False, "bad_request")), INV, Invalid, None),
    ("internal_server_error", SEND, response(200, envelope(False, "internal_server_error")),
     R, Unavailable, None),
    ("an unknown code", SEND, response(200, envelope(False, "something_new")), R,
     Unavailable, None),
    ("OK false without an error", SEND, response(200, {"OK": False}), R, Unavailable, None),
    ("no OK flag", SEND, response(200, {"Result": []}), R, Unavailable, None),
    ("OK as a string", SEND, response(200, {"OK": "true", "Result": []}), R, Unavailable,
     None),
    ("a list", SEND, response(200, []), R, Unavailable, None),
    ("not JSON", SEND, response(200, text="<html>"), R, Unavailable, None),
    ("integration credentials refused", "clients/integration_auth",
     response(200, envelope(False, "unauthorized")), H, CredentialsRefused,
     "IQSTORE_INTEGRATION_CREDENTIALS"),
    ("integration credentials invalid", "clients/integration_auth",
     response(200, envelope(False, "invalid")), H, CredentialsRefused,
     "IQSTORE_INTEGRATION_CREDENTIALS"),
    ("service token refused", APP, response(200, envelope(False, "unauthorized")), H,
     CredentialsRefused, "IQSTORE_SERVICE_TOKEN"),
    ("service account forbidden", APP, response(200, envelope(False, "forbidden")), H,
     CredentialsRefused, "IQSTORE_SERVICE_TOKEN"),
    ("service token refused (HTTP 401)", APP, response(401, text=""), H, CredentialsRefused,
     "IQSTORE_SERVICE_TOKEN"),
    ("upload 400", "files/upload", response(400, text="File is required"), INV, Invalid, None),
    ("upload 401: the session", "files/upload", response(401, text=""), R, AuthFailed, None),
    ("upload 403", "files/upload", response(403, text=""), INV, Forbidden, None),
    ("upload 404", "files/upload", response(404, text=""), INV, NotFound, None),
    ("upload 413", "files/upload", response(413, text=""), INV, Invalid, None),
    ("502", SEND, response(502, text=""), R, Unavailable, None),
    ("429", SEND, response(429, text="", **{"Retry-After": "3"}), L, RateLimited, None),
]


@pytest.mark.parametrize(("call", "answer", "decision", "kind", "setting"),
                         [case[1:] for case in IQSTORE], ids=[case[0] for case in IQSTORE])
def test_iqstore_table(call: str, answer: httpx.Response, decision: Decision,
                       kind: type[BridgeError] | None, setting: str | None) -> None:
    read, _ = iqstore.answer_of(answer, call=call, secrets=())
    error = iqstore.TABLE.classify(read, where=f"POST {call}")
    check(error, decision, kind, setting, "iqstore")
    if isinstance(error, RateLimited):
        assert error.retry_after == 3.0


# -- the shared parts -------------------------------------------------------------------


@pytest.mark.parametrize("status", range(100, 600))
def test_every_status_has_a_row(status: int) -> None:
    assert any(rule.matches(Answer(status)) for rule in HTTP_RULES)


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry_after": "17"}, 17.0),  # Omnidesk's header
    ({"Retry-After": "1.5"}, 1.5),
    ({"Retry-After": "-3"}, 0.0),
    ({"Retry-After": "inf"}, None),
    ({"Retry-After": "soon"}, None),
    ({}, None),
])
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(httpx.Headers(headers)) == seconds


def test_retry_after_as_a_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    waited = retry_after(httpx.Headers({"Retry-After": later}))
    assert waited is not None and 100 < waited <= 120
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=120), usegmt=True)
    assert retry_after(httpx.Headers({"Retry-After": past})) == 0.0


def test_held_is_never_taken_for_invalid() -> None:
    """A held error is an `AuthFailed` (the outbox holds those) and never an
    invalid one (that would drop the work); a plain `AuthFailed` is not held."""
    held = CredentialsRefused("no", setting="X_KEY", provider="x")
    assert held.held and held.retryable and isinstance(held, AuthFailed)
    assert not isinstance(held, Invalid | NotFound)
    assert not AuthFailed("one session", provider="x").held


@pytest.mark.parametrize("table", [omnidesk.TABLE, zenlix.TABLE, plusofon.TABLE, iqstore.TABLE],
                         ids=lambda table: table.provider)
def test_tables_describe_themselves(table: Any) -> None:
    rows = table.describe()
    assert len(rows) == len(table.rules)
    assert any(decision.startswith("held: check ") for _, decision in rows)
    assert table.describe(shared=True)[-1] == ("anything else (1xx, 3xx)", Decision.RETRY.value)

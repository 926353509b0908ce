"""The Omnidesk client: settings, the one error mapping, the budget headers
and the poll pacing policy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

# contract.py imports every harness module: load it before ours, not from it.
import tests.bridges.contract  # noqa: F401
from bot.sandbox.omnidesk import FakeClock, FakeOmnidesk
from bridges.errors import (
    CredentialsRefused,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)
from bridges.omnidesk.budget import ApiBudget, PollPacer
from bridges.omnidesk.client import OmnideskClient
from bridges.omnidesk.config import OmnideskSettings
from bridges.omnidesk.models import Case, Message, listing, one, parse_rfc2822
from tests.bridges.harness_omnidesk import omnidesk_bridge

SECRET = "od-super-secret-key-42"
ENV = {
    "OMNIDESK_BASE_URL": "https://acme.omnidesk.ru/",
    "OMNIDESK_STAFF_EMAIL": "bot@acme.example",
    "OMNIDESK_API_KEY": SECRET,
}


# -- settings ------------------------------------------------------------------


def test_settings_read_the_env_dict() -> None:
    settings = OmnideskSettings.from_env({**ENV, "OMNIDESK_CHANNEL": " cch101 "})
    assert settings.api_base == "https://acme.omnidesk.ru/api/"
    assert settings.channel == "cch101"
    assert settings.api_key.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    with_api = OmnideskSettings.from_env({**ENV, "OMNIDESK_BASE_URL": "https://a.omnidesk.ru/api"})
    assert with_api.api_base == "https://a.omnidesk.ru/api/"
    assert OmnideskSettings.from_env({**ENV, "OMNIDESK_CHANNEL": ""}).channel is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"OMNIDESK_BASE_URL": None}, "OMNIDESK_BASE_URL"),
        ({"OMNIDESK_BASE_URL": "acme.omnidesk.ru"}, "OMNIDESK_BASE_URL"),
        ({"OMNIDESK_STAFF_EMAIL": "bot"}, "OMNIDESK_STAFF_EMAIL"),
        ({"OMNIDESK_API_KEY": None}, "OMNIDESK_API_KEY"),
        ({"OMNIDESK_API_KEY": "  "}, "OMNIDESK_API_KEY"),
        ({"OMNIDESK_CHANNEL": "telegram"}, "OMNIDESK_CHANNEL"),
        ({"OMNIDESK_TIMEOUT_SECONDS": "-1"}, "OMNIDESK_TIMEOUT_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable_not_the_secret(
    change: dict[str, str | None], named: str
) -> None:
    env = {**ENV, **change}
    with pytest.raises(ValueError) as caught:
        OmnideskSettings.from_env({k: v for k, v in env.items() if v is not None})
    assert named in str(caught.value)
    assert SECRET not in str(caught.value)


# -- the one error mapping -------------------------------------------------------


def _response(status: int, body: object = None, *, text: str | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "https://acme.omnidesk.ru/api/cases/1.json")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


async def test_wrong_credentials_fail_without_leaking_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOmnidesk() as desk, omnidesk_bridge(
            desk, tmp_path, env=desk.env(api_key=SECRET)) as bridge:
        with pytest.raises(CredentialsRefused) as caught:
            await bridge.get_ticket("1001")
        report = await bridge.check()
    assert desk.rejected_auth == 2
    assert caught.value.setting == "OMNIDESK_API_KEY"  # held: the operator must fix it
    assert not report.ok
    assert "CredentialsRefused" in report.lines[-1] and "OMNIDESK_API_KEY" in report.lines[-1]
    shown = " ".join([str(caught.value), *report.lines, caplog.text])
    assert SECRET not in shown and desk.api_key not in shown


async def test_a_wrong_staff_email_is_held_not_invalid(tmp_path: Path) -> None:
    """Omnidesk answers a wrong staff e-mail with 403 (a wrong key with 401):
    nothing can succeed until the setting is fixed, so the work is held."""
    async with FakeOmnidesk() as desk, omnidesk_bridge(
            desk, tmp_path, env=desk.env(staff_email="nobody@example.com")) as bridge:
        with pytest.raises(CredentialsRefused) as caught:
            await bridge.get_ticket("1001")
    assert caught.value.setting == "OMNIDESK_STAFF_EMAIL"
    assert caught.value.held and not isinstance(caught.value, Invalid)


async def test_every_answer_updates_the_budget() -> None:
    async with FakeOmnidesk(calls_per_hour=500) as desk:
        client = OmnideskClient(OmnideskSettings.from_env(desk.env()))
        try:
            await client.get("staff.json")
            await client.get("groups.json")
            assert (client.budget.calls_left, client.budget.per_minute) == (498, None)
            desk.rate_limit(60, per="minute")
            with pytest.raises(NotFound):
                await client.get("cases/5.json")  # an error answer counts too
            assert (client.budget.calls_left, client.budget.per_minute) == (59, 60)
            desk.exhaust(style="429")
            with pytest.raises(RateLimited) as caught:
                await client.get("staff.json")
            assert caught.value.retry_after is not None and caught.value.retry_after > 0
            desk.rate_limit(500, style="403")
            desk.exhaust()
            with pytest.raises(RateLimited) as old_style:
                await client.get("staff.json")
            assert old_style.value.retry_after is None
            assert client.request_count == 5
        finally:
            await client.aclose()


async def test_timeouts_and_server_errors_are_unavailable(tmp_path: Path) -> None:
    async with FakeOmnidesk() as desk, omnidesk_bridge(
            desk, tmp_path, env={**desk.env(), "OMNIDESK_TIMEOUT_SECONDS": "0.2"}) as bridge:
        desk.delay_next(1.0, path="/api/cases/")
        with pytest.raises(Unavailable, match="no answer in time"):
            await bridge.get_ticket("1001")
        desk.fail_next(502, body="<html>bad gateway</html>")
        with pytest.raises(Unavailable, match="502"):
            await bridge.get_ticket("1001")
        desk.fail_next(200, body="<html>a captive portal</html>")
        with pytest.raises(Unavailable, match="not JSON"):
            await bridge.get_ticket("1001")
        with pytest.raises(NotFound, match="case_not_found"):
            await bridge.get_ticket("1001")


# -- payloads --------------------------------------------------------------------


DATE = "Mon, 05 May 2014 00:15:17 +0300"
CASE = {"case_id": 1, "case_number": "664-245651", "subject": "Printer", "user_id": 7,
        "staff_id": 0, "group_id": 0, "status": "open", "priority": "normal",
        "channel": "telegram", "deleted": False, "spam": False, "created_at": DATE,
        "updated_at": DATE}
MESSAGE = {"message_id": 9, "user_id": 7, "staff_id": 0, "content": "Hello",
           "content_html": "<p>Hello</p>", "attachments": [], "note": False,
           "sent_via_rule": False, "created_at": DATE}


def cases(*records: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**{str(n): {"case": r} for n, r in enumerate(records)}, **extra}


# Lists and records as the document shows them, and as third-party clients of
# the real API met them (issue 13).
LISTS: list[tuple[str, Any, list[int], int | None, int]] = [
    ("the document's shape", cases(CASE, {**CASE, "case_id": 2}, total_count="17"), [1, 2],
     17, 2),
    ("positions out of order", {"1": {"case": {**CASE, "case_id": 2}}, "0": {"case": CASE},
                                "total_count": 2}, [1, 2], 2, 2),
    ("empty: {'case': []} without total_count", {"case": []}, [], None, 0),
    ("empty: []", [], [], 0, 0),
    ("empty: {}", {}, [], None, 0),
    ("empty: no body", None, [], 0, 0),
    ("empty: total_count only", {"total_count": 0}, [], 0, 0),
    ("no total_count", cases(CASE), [1], None, 1),
    ("extra case fields", cases({**CASE, "closed_at": DATE, "last_response_at": DATE,
                                 "parent_case_id": 0, "recipient_cc": ["a@b.c"],
                                 "closing_speed": "-"}), [1], None, 1),
    ("closing_speed in minutes, nulls for ids", cases({**CASE, "closing_speed": 17,
                                                       "staff_id": None, "group_id": ""}),
     [1], None, 1),
    ("one unreadable case among readable ones",
     cases(CASE, {**CASE, "case_id": 2, "created_at": "the day before yesterday"},
           {**CASE, "case_id": 3}, total_count=3), [1, 3], 3, 3),
    ("a case without its id", cases({**CASE, "case_id": None}, {**CASE, "case_id": 2}),
     [2], None, 2),
    ("an entry that is not a case", {"0": "oops", "1": {"case": CASE}}, [1], None, 2),
]


@pytest.mark.parametrize(("payload", "ids", "total", "entries"),
                         [case[1:] for case in LISTS], ids=[case[0] for case in LISTS])
def test_case_lists(payload: Any, ids: list[int], total: int | None, entries: int,
                    caplog: pytest.LogCaptureFixture) -> None:
    page = listing(payload, "case", Case)
    assert [case.case_id for case in page.items] == ids
    assert (page.total, page.entries) == (total, entries)
    if len(ids) < entries:  # what was skipped is logged with its id
        assert "unreadable Omnidesk case" in caplog.text


MESSAGES: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("the document's shape", MESSAGE, 9, "<p>Hello</p>"),
    ("without content_html", {k: v for k, v in MESSAGE.items() if k != "content_html"}, 9, ""),
    ("sent_at: a delayed message", {**MESSAGE, "sent_at": DATE}, 9, "<p>Hello</p>"),
    ("sent_at and no created_at", {**MESSAGE, "created_at": None, "sent_at": DATE}, 9,
     "<p>Hello</p>"),
    ("sent_at unreadable", {**MESSAGE, "sent_at": "-"}, 9, "<p>Hello</p>"),
    ("attachments null", {**MESSAGE, "attachments": None}, 9, "<p>Hello</p>"),
    ("attachments keyed by position", {**MESSAGE, "attachments": {
        "0": {"file_id": 1, "file_name": "a.pdf", "file_size": "12", "mime_type": None,
              "url": "https://x/a.pdf"}}}, 9, "<p>Hello</p>"),
    ("unreadable: no date at all", {**MESSAGE, "created_at": None}, 0, None),
]


@pytest.mark.parametrize(("record", "message_id", "html"),
                         [case[1:] for case in MESSAGES], ids=[case[0] for case in MESSAGES])
def test_messages(record: dict[str, Any], message_id: int, html: str | None) -> None:
    page = listing({"0": {"message": record}, "1": {"message": {**MESSAGE, "message_id": 10}}},
                   "message", Message)
    assert [m.message_id for m in page.items] == ([message_id, 10] if message_id else [10])
    if message_id:
        assert page.items[0].content_html == html
        assert page.items[0].created_at == parse_rfc2822(DATE)
    assert page.entries == 2


def test_a_single_object_must_be_readable() -> None:
    assert one({"case": CASE}, "case", Case).case_id == 1
    for broken in ({"case": {**CASE, "case_id": "x"}}, {"case": []}, None):
        with pytest.raises(Unavailable):
            one(broken, "case", Case)


# -- pacing policy ---------------------------------------------------------------------


def test_pacer_spreads_what_is_left_over_the_rest_of_the_window() -> None:
    clock = FakeClock(0)
    budget = ApiBudget()
    pacer = PollPacer(budget, clock, burst=10)
    assert pacer.available() == 10  # nothing reported yet: no limit known
    budget.observe({"api_calls_left": "500"}, clock())  # the window is taken to start now
    assert budget.reserve == 50
    assert pacer.available() == 22.5  # a twentieth of what is left above the reserve
    pacer.spend(22.5)
    clock.advance(8)  # (500 - 50) / 3592 s left: about one call per 8 s
    assert pacer.available() == pytest.approx(8 * 450 / 3592)
    clock.advance(1792)
    budget.observe({"api_calls_left": "140"}, clock())  # half the window left, less budget
    pacer.spend(int(pacer.available()))
    credit = pacer.available()
    clock.advance(20)
    assert pacer.available() == pytest.approx(credit + 20 * 90 / 1780)
    pacer.spend(2)
    assert pacer.seconds_until_credit() == pytest.approx(
        (1 - pacer.available()) * 1780 / 90, rel=1e-3)
    clock.advance(100_000)
    assert pacer.available() == 10  # capped at one cycle


def test_a_refill_starts_a_new_window() -> None:
    clock = FakeClock(100)
    budget = ApiBudget()
    budget.observe({"api_calls_left": "500"}, clock())
    clock.advance(3000)
    budget.observe({"api_calls_left": "120"}, clock())
    assert budget.seconds_to_window_end(clock()) == 600
    assert budget.poll_rate(clock()) == pytest.approx(70 / 600)
    clock.advance(100)
    budget.observe({"api_calls_left": "121"}, clock())  # noise, not a refill
    assert budget.seconds_to_window_end(clock()) == 500
    clock.advance(300)  # the real window ended earlier than assumed
    budget.observe({"api_calls_left": "499"}, clock())
    assert budget.seconds_to_window_end(clock()) == 3600
    assert budget.poll_rate(clock()) == pytest.approx(449 / 3600)


def test_pacer_probes_slowly_at_the_reserve_and_waits_after_a_refusal() -> None:
    clock = FakeClock(0)
    budget = ApiBudget()
    budget.observe({"api_calls_left": "500"}, clock())
    budget.observe({"api_calls_left": "40"}, clock())  # below the reserve of 50
    pacer = PollPacer(budget, clock, burst=5)
    assert pacer.available() == 1  # nothing above the reserve: one probe at most
    pacer.spend(1)
    clock.advance(299)
    assert pacer.available() < 1
    clock.advance(1)
    assert pacer.available() == pytest.approx(1.0)  # one probe per 5 minutes
    budget.observe({"api_calls_left": "0", "rate_limit_per_minute": "60", "retry_after": "20"},
                   clock())
    pacer.block(20)
    assert pacer.seconds_until_credit() == pytest.approx(20 + 1 / (1 / 5))
    clock.advance(19)
    assert pacer.available() <= 0
    clock.advance(6)
    assert pacer.available() >= 1

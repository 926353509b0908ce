"""The Zenlix client: answers unwrapped (its table is tested with the others
in test_classification.py), sign-in judged by `status`, one re-sign-in on a
refused key, settings from the env dict, and secrets kept out of logs and
errors."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from bot.sandbox.zenlix import FakeZenlix
from bridges.errors import (
    AuthFailed,
    BridgeError,
    Unavailable,
)
from bridges.zenlix.client import ListUnreadable, ZenlixClient, interpret
from bridges.zenlix.config import ZenlixSettings
from bridges.zenlix.models import Comment, ListedTicket, list_of
from bridges.zenlix.reader import parse_rows
from tests.bridges.harness_zenlix import SERVICE_LOGIN, SERVICE_PASSWORD, populate

URL = "http://zenlix.test/api.php"


def answer(status: int = 200, body: str | bytes = b"", **headers: str) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers=headers,
                          request=httpx.Request("POST", URL))


def wrapped(**fields: object) -> str:
    return json.dumps([fields]) + "    "


@pytest.mark.parametrize("body", [
    wrapped(status="ok", error_description=None, tickets=[]),  # one-element array
    json.dumps({"status": "ok", "uniq_id": "k", "fio": "Desk Bot"}) + "    ",  # auth: bare
])
def test_ok_answers_are_unwrapped(body: str) -> None:
    assert interpret("ticket_list", answer(body=body))["status"] == "ok"


# -- against the fake -------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeZenlix]:
    async with FakeZenlix() as server:
        populate(server)
        yield server


def settings_for(fake: FakeZenlix, **overrides: str) -> ZenlixSettings:
    env = {"ZENLIX_BASE_URL": fake.base_url, "ZENLIX_LOGIN": SERVICE_LOGIN,
           "ZENLIX_PASSWORD": SERVICE_PASSWORD, "ZENLIX_TIMEOUT_SECONDS": "0.5"}
    env.update(overrides)
    return ZenlixSettings.from_env(env)


@pytest.fixture
async def client(fake: FakeZenlix) -> AsyncIterator[ZenlixClient]:
    zenlix = ZenlixClient(settings_for(fake))
    yield zenlix
    await zenlix.aclose()


async def test_sign_in_sends_no_device_token(fake: FakeZenlix, client: ZenlixClient) -> None:
    await client.call("get_unit_list")
    [auth] = fake.calls("auth")
    assert set(auth) == {"mode", "login", "pass"}
    assert fake.devices == []


async def test_refused_sign_in_is_judged_by_status(fake: FakeZenlix) -> None:
    wrong = ZenlixClient(settings_for(fake, ZENLIX_PASSWORD="not-the-password"))
    try:
        with pytest.raises(AuthFailed) as raised:
            await wrong.call("ticket_list", {"type": "in"})
    finally:
        await wrong.aclose()
    assert "not-the-password" not in str(raised.value)
    assert fake.requests["ticket_list"] == 0  # the random uniq_id was not used


async def test_refused_key_signs_in_once_more(fake: FakeZenlix, client: ZenlixClient) -> None:
    await client.call("ticket_list", {"type": "in"})
    fake.revoke_keys()  # an admin reset the keys

    answer = await client.call("ticket_list", {"type": "in"})

    assert answer["status"] == "ok"
    assert fake.requests["auth"] == 2
    assert fake.requests["ticket_list"] == 3  # the refused call, then its retry


async def test_refused_twice_is_auth_failed(fake: FakeZenlix, client: ZenlixClient) -> None:
    await client.call("get_unit_list")
    fake.users[next(h for h, u in fake.users.items() if u.login == SERVICE_LOGIN)].status = 0
    fake.revoke_keys()
    with pytest.raises(AuthFailed):
        await client.call("get_unit_list")
    assert fake.requests["auth"] == 2  # one re-sign-in, no loop


@pytest.mark.parametrize(("fault", "error"), [
    ("500", Unavailable), ("hang", Unavailable), ("empty", ListUnreadable),
    ("html", Unavailable)])
async def test_faults_of_the_server(fake: FakeZenlix, client: ZenlixClient, fault: str,
                                    error: type[BridgeError]) -> None:
    await client.call("get_unit_list")
    fake.hang_seconds = 5.0
    fake.fail_next(fault, mode="ticket_list")
    with pytest.raises(error):
        await client.call("ticket_list", {"type": "in"})
    assert (await client.call("ticket_list", {"type": "in"}))["status"] == "ok"


async def test_secrets_stay_out_of_logs_and_errors(fake: FakeZenlix, client: ZenlixClient,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await client.call("get_unit_list")
    key = next(iter(fake.keys))
    fake.revoke_keys()
    await client.call("get_unit_list")
    fake.fail_next("500")
    with pytest.raises(Unavailable) as raised:
        await client.call("get_unit_list")
    with pytest.raises(AuthFailed) as refused:
        await client.sign_in("boris", SecretStr("wrong-password-123"))
    logged = caplog.text + str(raised.value) + str(refused.value) + repr(client.__dict__)
    for secret in (SERVICE_PASSWORD, key, "wrong-password-123"):
        assert secret not in logged


def test_settings_come_from_the_env_dict() -> None:
    settings = ZenlixSettings.from_env({
        "ZENLIX_BASE_URL": "https://desk.example.com/zenlix/api.php",
        "ZENLIX_LOGIN": "bot", "ZENLIX_PASSWORD": "p4ss",
        "ZENLIX_DEFAULT_CLIENT": "7371A131B959F3527CBDE59F0E5CAF96",
        "ZENLIX_CALLS_PER_CYCLE": "30", "ZENLIX_DEFAULT_UNIT": "",
    })
    assert settings.api_url == "https://desk.example.com/zenlix/api.php"
    assert settings.ticket_url("ab" * 16) == f"https://desk.example.com/zenlix/ticket?{'ab' * 16}"
    assert settings.default_client == "7371a131b959f3527cbde59f0e5caf96"
    assert settings.calls_per_cycle == 30 and settings.default_unit is None
    assert "p4ss" not in repr(settings)


@pytest.mark.parametrize(("env", "names"), [
    ({}, ["ZENLIX_BASE_URL", "ZENLIX_LOGIN", "ZENLIX_PASSWORD"]),
    ({"ZENLIX_BASE_URL": "desk.example.com", "ZENLIX_LOGIN": "bot",
      "ZENLIX_PASSWORD": "hunter2-secret", "ZENLIX_DEFAULT_CLIENT": "Ivan",
      "ZENLIX_CALLS_PER_CYCLE": "1", "ZENLIX_TIMEZONE": "Mars/Olympus"},
     ["ZENLIX_BASE_URL", "ZENLIX_DEFAULT_CLIENT", "ZENLIX_CALLS_PER_CYCLE", "ZENLIX_TIMEZONE"]),
])
def test_bad_settings_name_the_variables_not_the_values(env: dict[str, str],
                                                        names: list[str]) -> None:
    with pytest.raises(ValueError) as raised:
        ZenlixSettings.from_env(env)
    for name in names:
        assert name in str(raised.value)
    assert "hunter2-secret" not in str(raised.value)


# -- parsing ---------------------------------------------------------------------------

ROW = {"status": "free", "id_ticket": 17, "prio": 1, "client_hash": "c" * 32, "subj": "",
       "ticket_hash": "a" * 32, "text": "help", "date_created": "2026-01-02 03:04:05",
       "to_user_hash": None, "user_init_hash": "u" * 32, "to_unit_id": 1}
LISTS: list[tuple[str, dict[str, object], list[int]]] = [
    ("the seed's shape", {"tickets": [ROW, {**ROW, "id_ticket": 18, "ticket_hash": "b" * 32}]},
     [17, 18]),
    ("empty list", {"tickets": []}, []),
    ("null", {"tickets": None}, []),
    ("absent", {}, []),
    ("empty object", {"tickets": {}}, []),
    ("an object keyed by position", {"tickets": {"1": {**ROW, "id_ticket": 18},
                                                 "0": ROW}}, [17, 18]),
    ("numbers as strings, nobody as '0' or ''",
     {"tickets": [{**ROW, "id_ticket": "17", "prio": "2", "to_unit_id": "1",
                   "to_user_hash": "0", "client_hash": ""}]}, [17]),
    ("2.95's extra fields", {"tickets": [{**ROW, "status": "lock_by_other",
                                          "lock_by_other_fio": "Ivanova M.P.",
                                          "ok_by_fio": "0", "access_priv": ["unlock"],
                                          "user_init_fio": "Anna", "to_user_fio": ""}]}, [17]),
    ("one unreadable row among readable ones",
     {"tickets": [ROW, {**ROW, "id_ticket": "#", "ticket_hash": "b" * 32},
                  {**ROW, "id_ticket": 19, "ticket_hash": "c" * 32}, "not a row"]}, [17, 19]),
]


@pytest.mark.parametrize(("answer", "ids"), [case[1:] for case in LISTS],
                         ids=[case[0] for case in LISTS])
def test_ticket_lists(answer: dict[str, object], ids: list[int],
                      caplog: pytest.LogCaptureFixture) -> None:
    rows = parse_rows(ListedTicket, list_of(answer, "tickets"))
    assert [row.id_ticket for row in rows] == ids
    if "unreadable" in caplog.text:
        assert "(id " + "b" * 32 in caplog.text  # named by its hash, never dropped unsaid


def test_comment_rows_always_parse() -> None:
    """Comments have no id: they are known by position, so none may be dropped."""
    rows = [{"author": None, "dt": None, "text": None}, {"author": 0, "text": 5},
            {"author": "A" * 32, "dt": "2026-01-02 03:04:05", "text": "hi", "usr_fio": None,
             "usr_img": "", "ticket_code": 17}]
    assert len(parse_rows(Comment, rows)) == 3

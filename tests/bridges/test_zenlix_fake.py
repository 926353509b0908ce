"""The fake Zenlix behaves as providers/zenlix.md says the real ZENLIX 2.95
does: the bridge's tests are only as good as this."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.sandbox.zenlix import FakeZenlix, api_text
from tests.bridges.harness_zenlix import (
    AGENT_LOGIN,
    AGENT_PASSWORD,
    SERVICE_LOGIN,
    SERVICE_PASSWORD,
    ZenlixWorld,
    populate,
)


class Raw:
    """Raw HTTP against the fake, as the real API's users see it."""

    def __init__(self, fake: FakeZenlix, http: httpx.AsyncClient) -> None:
        self.fake, self.http = fake, http

    async def post(self, body: Any, path: str = "/api.php") -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.http.post(self.fake.base_url + path, content=content)

    async def call(self, mode: str, key: str | None = None, **fields: Any) -> Any:
        body = {"mode": mode, **fields}
        if key is not None:
            body["uniq_id"] = key
        response = await self.post(body)
        assert response.text.endswith("    ")
        return json.loads(response.text)

    async def key(self, login: str = SERVICE_LOGIN, password: str = SERVICE_PASSWORD) -> str:
        answer = await self.call("auth", login=login, **{"pass": password})
        assert answer["status"] == "ok"
        return str(answer["uniq_id"])


@pytest.fixture
async def raw() -> AsyncIterator[tuple[Raw, ZenlixWorld]]:
    async with FakeZenlix() as fake, httpx.AsyncClient() as http:
        yield Raw(fake, http), populate(fake)


async def new_ticket(raw: Raw, key: str, world: ZenlixWorld, text: str = "help") -> str:
    [answer] = await raw.call("create_ticket", key, user_to_id="0", subj="1", msg=text,
                              client_id=world.anna, unit_id="1", prio="1")
    assert answer["status"] == "ok", answer
    return str(answer["ticket_hash"])


async def test_envelopes_paths_and_garbage(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, _ = raw
    bare = await api.call("auth", login=SERVICE_LOGIN, **{"pass": SERVICE_PASSWORD})
    assert isinstance(bare, dict) and bare["status"] == "ok"  # auth: a bare object
    listed = await api.call("ticket_list", bare["uniq_id"], type="in")
    assert isinstance(listed, list) and len(listed) == 1  # everything else: one-element array
    for body in (b"not json", b'{"no": "mode"}'):
        answer = await api.post(body)
        assert (answer.status_code, answer.text) == (200, "    ")
    page = await api.post({"mode": "auth"}, path="/index.php")
    assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>")
    [typo] = await api.call("get_ticket_comments ", bare["uniq_id"], ticket_hash="x")
    assert typo["error_description"] == "mode-param is not valid"


async def test_auth_failures_and_keys(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, _ = raw
    failed = await api.call("auth", login=SERVICE_LOGIN, **{"pass": "wrong"})
    assert failed["status"] == "error" and len(failed["uniq_id"]) == 32  # a random key anyway
    [refused] = await api.call("ticket_list", failed["uniq_id"], type="in")
    assert refused["status"] == "error"
    [missing] = await api.call("ticket_list", failed["uniq_id"])  # params before the key
    assert missing["error_description"] == "not all params"
    key = await api.key()
    assert await api.key() == key  # the key never expires
    await api.call("auth", login=SERVICE_LOGIN, device_token="", **{"pass": SERVICE_PASSWORD})
    assert len(api.fake.devices) == 1  # even "" registers a push device


async def test_strict_mode_failures_store_nothing(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    key = await api.key()
    ticket = await new_ticket(api, key, world)
    for mode, fields in [
        ("create_ticket", {"user_to_id": "0", "subj": "1", "msg": "hi 🙂",
                           "client_id": world.anna, "unit_id": "1", "prio": "1"}),
        ("create_ticket", {"user_to_id": "0", "subj": "1", "msg": "hi",
                           "client_id": world.anna, "unit_id": "", "prio": "1"}),
        ("add_ticket_comment", {"ticket_hash": ticket, "msg": "🙂"}),
        ("add_ticket_comment", {"ticket_hash": ticket, "msg": "x" * 2049}),
        ("refer_ticket", {"ticket_hash": ticket, "msg": "", "unit_id": "two",
                          "user_to_id": "0"}),
    ]:
        answer = await api.post({"mode": mode, "uniq_id": key, **fields})
        assert (answer.status_code, answer.text) == (500, ""), mode
    assert len(api.fake.tickets) == 1
    assert api.fake.comments == []
    assert api.fake.ticket(ticket).unit == 1
    [ok] = await api.call("add_ticket_comment", key, ticket_hash=ticket, msg="x" * 2048)
    assert ok["status"] == "ok"


async def test_lenient_install_mangles_instead(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    api.fake.strict = False
    key = await api.key()
    ticket = await new_ticket(api, key, world, "hi 🙂")
    await api.call("add_ticket_comment", key, ticket_hash=ticket, msg="y" * 3000)
    assert api.fake.ticket(ticket).text == "hi ????"
    assert len(api.fake.comments_of(ticket)[0].text) == 2048


async def test_create_ticket_rules(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    key = await api.key()
    [missing] = await api.call("create_ticket", key, subj="1", msg="m", client_id=world.anna,
                               unit_id="1", prio="1")
    assert missing["error_description"] == "not all params"
    [unknown] = await api.call("create_ticket", key, user_to_id="0", subj="1", msg="m",
                               client_id="0" * 32, unit_id="1", prio="1")
    assert unknown["error_description"] == "error data in fields"
    [made] = await api.call("create_ticket", key, user_to_id="0", subj="Printer", msg="m",
                            client_id=world.anna, unit_id="1", prio="7")
    stored = api.fake.ticket(made["ticket_hash"])
    assert (stored.subj, stored.prio, made["ticket_id"]) == ("", 1, stored.id)


async def test_tickets_of_one_second_share_a_hash() -> None:
    async with FakeZenlix(clock=lambda: 1_700_000_000.5) as fake, httpx.AsyncClient() as http:
        world = populate(fake)
        api = Raw(fake, http)
        key = await api.key()
        first = await new_ticket(api, key, world, "first")
        second = await new_ticket(api, key, world, "second")
        assert first == second
        [view] = await api.call("ticket_view", key, ticket_hash=second)
        assert view["ticket"][0]["text"] == "first"  # the hash leads to the older one


async def test_locking_rules(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    chief, boris = await api.key(), await api.key(AGENT_LOGIN, AGENT_PASSWORD)
    olga = await api.key("olga", "olga-secret")
    ticket = await new_ticket(api, chief, world)

    [locked] = await api.call("ticket_lock", boris, ticket_hash=ticket)
    assert (locked["status"], locked["status_ticket"]) == ("ok", "free")
    assert locked["access_priv"] == "ref,unlock,ok"
    [again] = await api.call("ticket_lock", boris, ticket_hash=ticket)
    assert again["error_description"] == "you have no priviliges"  # held already
    [stolen] = await api.call("ticket_unlock", olga, ticket_hash=ticket)
    assert (stolen["error_description"], stolen["access_priv"]) == (
        "you have no priviliges", "no_priv")
    [not_holder] = await api.call("ticket_ok", olga, ticket_hash=ticket)
    assert not_holder["status"] == "error"
    [done] = await api.call("ticket_ok", boris, ticket_hash=ticket)
    assert done["status"] == "ok" and api.fake.ticket(ticket).lock_by == world.boris
    [other] = await api.call("ticket_no_ok", olga, ticket_hash=ticket)
    assert other["status"] == "error"
    [reopened] = await api.call("ticket_no_ok", chief, ticket_hash=ticket)  # a chief may
    assert reopened["status_ticket"] == "ok_by_other"
    stored = api.fake.ticket(ticket)
    assert (stored.ok, stored.lock_by) == (False, world.service)  # locked by the caller
    [view] = await api.call("ticket_view", chief, ticket_hash=ticket)
    assert view["ticket"][0]["status"] == "lock_by_me"


async def test_refer_appends_its_message(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    key = await api.key()
    ticket = await new_ticket(api, key, world, "Printer")
    [missing] = await api.call("refer_ticket", key, ticket_hash=ticket, unit_id="2",
                               user_to_id="0")
    assert missing["error_description"] == "not all params"
    await api.call("refer_ticket", key, ticket_hash=ticket, unit_id="2", user_to_id="0",
                   msg="over to billing")
    stored = api.fake.ticket(ticket)
    assert stored.unit == 2
    assert stored.text.startswith("Printer<br><strong>")
    assert stored.text.endswith("</strong>over to billing")
    [view] = await api.call("ticket_view", key, ticket_hash=ticket)
    assert view["ticket"][0]["text"] == "Printer\r\nDesk Bot referred: over to billing"
    [comments] = await api.call("get_ticket_comments", key, ticket_hash=ticket)
    assert comments["comments"] == []


async def test_refer_to_zero_hides_the_ticket_from_ordinary_agents(
    raw: tuple[Raw, ZenlixWorld]
) -> None:
    """`refer_ticket` looks the user up by hash: "0" is nobody, stored as NULL,
    which `find_in_set('0', user_to_id)` never matches."""
    api, world = raw
    chief, olga = await api.key(), await api.key("olga", "olga-secret")
    ticket = await new_ticket(api, chief, world)

    async def olga_sees() -> bool:
        [answer] = await api.call("ticket_list", olga, type="in")
        return ticket in [t["ticket_hash"] for t in answer["tickets"]]

    assert await olga_sees()  # created for unit 1 with "0": the whole unit
    await api.call("refer_ticket", chief, ticket_hash=ticket, unit_id="2", user_to_id="0",
                   msg="")
    assert api.fake.ticket(ticket).user_to == ""
    assert not await olga_sees()  # Olga is in unit 2, yet no longer sees it
    [staff] = await api.call("get_user_by_dep", chief, dep_code="2")
    everyone = ",".join(u["uniq_id"] for u in staff["users"])
    await api.call("refer_ticket", chief, ticket_hash=ticket, unit_id="2",
                   user_to_id=everyone, msg="")
    assert await olga_sees()
    [row] = [t for t in (await api.call("ticket_list", chief, type="in"))[0]["tickets"]
             if t["ticket_hash"] == ticket]
    assert row["to_user_hash"] == everyone


async def test_reading_tickets_comments_and_people(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    key = await api.key()
    ticket = await new_ticket(api, key, world, "<b>Жирный</b> " + "я" * 200)
    await api.call("add_ticket_comment", key, ticket_hash=ticket,
                   msg="see <i>this</i> [file:scan.pdf] tail")
    [orphan] = await api.call("add_ticket_comment", key, ticket_hash="0" * 32, msg="lost")
    assert orphan["status"] == "ok"
    [unknown] = await api.call("ticket_view", key, ticket_hash="0" * 32)
    assert unknown == {"status": None, "error_description": None}

    [listed] = await api.call("ticket_list", key, type="in")
    [row] = listed["tickets"]
    assert row["text"].startswith("<b>Жирный</b>") and len(row["text"].encode()) <= 150
    [comments] = await api.call("get_ticket_comments", key, ticket_hash=ticket)
    [comment] = comments["comments"]
    assert (comment["text"], comment["usr_fio"], comment["author"]) == (
        "see this ", "Desk Bot", world.service)

    [by_phone] = await api.call("get_users_list", key, find_param="9%1%6%0%0%0%1%1%2%2")
    assert [u["uniq_id"] for u in by_phone["users"]] == [world.anna]
    assert "status_user" in by_phone["users"][0]
    api.fake.users[world.anna].email = "anna@example.com"
    [by_mail] = await api.call("get_users_list", key, find_param="anna@example.com")
    assert by_mail["users"] == []  # e-mail is not searched
    [nobody] = await api.call("get_user_info", key, user_hash="0" * 32)
    assert nobody["status"] == "ok" and nobody["info"][0]["fio"] is None


@pytest.mark.parametrize(("stored", "returned"), [
    ("a < b and c > d", "a < b and c > d"),  # `<` before a space is kept
    ("ends in <", "ends in "),  # ...before the end of the text it starts a tag
    ("x <\u00a0y> z", "x  z"),  # a no-break space is no space to strip_tags
    ("x <\u3000y", "x "),  # nor is an ideographic space; no `>`: to the end
    ("<p>one</p>\n<b>two</b>", "one\ntwo"),
    ('<a title="1>2">link</a> after', "link after"),  # `>` inside quotes
    ("<<b>nested>> x", "> x"),  # nested `<` counted: the second `>` closes the tag
    ("<!-- a comment > still -->kept", "kept"),
    ("<?php echo '>'; ?>code", "code"),
    ("tab <\tstays", "tab <\tstays"),
    ("cut [file:report.pdf] <b>gone</b>", "cut "),
])
def test_comments_go_through_strip_tags(stored: str, returned: str) -> None:
    assert api_text(stored) == returned


async def test_a_ticket_text_cut_inside_a_character_empties_the_list(
    raw: tuple[Raw, ZenlixWorld]
) -> None:
    """`cutstr_api`: wordwrap at 150 bytes, breaking words; with no space in
    the first 150 bytes a 3-byte character straddles the cut and json_encode
    fails for the whole list."""
    api, world = raw
    key = await api.key()
    fine = await new_ticket(api, key, world, "a" * 149 + " " + "я" * 100)
    [answer] = await api.call("ticket_list", key, type="in")
    assert [row["text"] for row in answer["tickets"]] == ["a" * 149]
    spaced = await new_ticket(api, key, world, "我" + " " + "我" * 100)  # 3 bytes each
    broken = api.fake.seed_ticket(world.anna, "a" + "我" * 100)  # bytes 148-150: one 我
    response = await api.post({"mode": "ticket_list", "uniq_id": key, "type": "in"})
    assert (response.status_code, response.text) == (200, "    ")
    [view] = await api.call("ticket_view", key, ticket_hash=fine)
    assert view["status"] == "ok"  # one ticket at a time still works
    api.fake.delete_ticket(broken)
    [answer] = await api.call("ticket_list", key, type="in")
    assert [row["text"] for row in answer["tickets"]] == ["我", "a" * 149]
    assert answer["tickets"][0]["ticket_hash"] == spaced


async def test_lock_holders_and_disabled_accounts(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    chief, boris = await api.key(), await api.key(AGENT_LOGIN, AGENT_PASSWORD)
    ticket = await new_ticket(api, chief, world)
    ivanova = api.fake.add_staff("ivanova", "pw", "Ivanova Maria Petrovna")
    api.fake.lock_as(ivanova, ticket)
    [answer] = await api.call("ticket_list", chief, type="in")
    assert (answer["tickets"][0]["status"], answer["tickets"][0]["lock_by_other_fio"]) == (
        "lock_by_other", "Ivanova M.P.")
    [view] = await api.call("ticket_view", chief, ticket_hash=ticket)
    assert (view["ticket"][0]["lock_by"], view["ticket"][0]["lock_by_fio"]) == (
        ivanova, "Ivanova M.P.")
    [refer] = await api.call("refer_ticket", chief, ticket_hash=ticket, unit_id="2",
                             user_to_id="0", msg="")
    assert refer["error_description"] == "you have no priviliges"  # a chief only unlocks

    api.fake.users[world.boris].status = 0  # disabled in the UI: the key still works
    [still] = await api.call("ticket_list", boris, type="in")
    assert still["status"] == "ok"
    refused = await api.call("auth", login=AGENT_LOGIN, **{"pass": AGENT_PASSWORD})
    assert refused["status"] == "error"  # but no new sign-in
    api.fake.users[world.boris].status = 2  # deleted
    [gone] = await api.call("ticket_list", boris, type="in")
    assert gone["error_description"] == "system auth error"


async def test_lists_follow_privileges(raw: tuple[Raw, ZenlixWorld]) -> None:
    api, world = raw
    chief, boris = await api.key(), await api.key(AGENT_LOGIN, AGENT_PASSWORD)
    billing = api.fake.seed_ticket(world.anna, "billing question", unit=2)
    support = api.fake.seed_ticket(world.anna, "support question", unit=1)

    async def hashes(key: str, kind: str) -> list[str]:
        [answer] = await api.call("ticket_list", key, type=kind)
        return [t["ticket_hash"] for t in answer["tickets"]]

    assert await hashes(chief, "in") == await hashes(chief, "out") == [support, billing]
    assert await hashes(boris, "in") == [support]  # his unit only
    assert await hashes(boris, "out") == []
    api.fake.archive(support)
    assert await hashes(chief, "in") == [billing]
    assert await hashes(chief, "arch") == [support]

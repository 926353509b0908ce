"""`deskbridge demo` in a real browser: headless Chromium from the system's
packages (Debian's `chromium`), driven by Playwright, which downloads nothing.

On failure a screenshot of each pane (and the demo's output) is kept in
``test-output/browser/<test>/`` (or under ``$DESKBRIDGE_TEST_OUTPUT``).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.bot.conftest import free_port
from tests.sandbox.test_demo_command import READY_TIMEOUT, ROOT, demo

CHROMIUM = next((path for path in (
    os.environ.get("DESKBRIDGE_CHROMIUM"), shutil.which("chromium"),
    shutil.which("chromium-browser"), "/usr/bin/chromium") if path and Path(path).exists()),
    None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
OUTPUT = Path(os.environ.get("DESKBRIDGE_TEST_OUTPUT") or ROOT / "test-output") / "browser"
STEP = 30_000  # ms: one step of the story on a loaded CI machine

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary: install Debian's chromium (`apt-get install -y chromium`; "
           ".ci/run does) or set DESKBRIDGE_CHROMIUM")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def keep_evidence(page: Page, name: str, output: str) -> Path:
    folder = OUTPUT / name
    folder.mkdir(parents=True, exist_ok=True)
    for pane in ("customer-pane", "agent-pane"):
        await page.locator(f"#{pane}").screenshot(path=folder / f"{pane}.png")
    await page.screenshot(path=folder / "page.png", full_page=True)
    (folder / "demo-output.txt").write_text(output)
    return folder


async def test_a_request_from_the_customer_to_the_rating_in_the_browser(
    browser: Browser, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    async with demo(tmp_path, "--port", str(port)) as running:
        await running.line_matching(r"ready in", READY_TIMEOUT)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(STEP)
        customer, agent = page.locator("#customer-pane"), page.locator("#agent-pane")
        try:
            await page.goto(f"http://127.0.0.1:{port}/")
            await expect(page.locator("#status")).to_have_attribute("data-status", "online")

            # A customer (Jane, the first tab) starts the bot and opens a request.
            await expect(customer.locator("#customer-tabs .active")).to_contain_text("Jane")
            await customer.locator("#customer-start").click()
            await expect(customer.locator(".msg.in").first).to_contain_text("Hello")
            await customer.locator("#customer-input").fill(
                "The printer does not print\nError 42 since this morning")
            await customer.locator("#customer-input").press("Enter")
            await expect(customer.locator(".msg.in").last).to_contain_text("is open")

            # Its topic appears in the agents' pane; the card is in it.
            topic = agent.locator("#topics .topic", has_text="The printer does not print")
            await topic.click()
            # (The card is edited as the ticket changes: found by what stays on it.)
            card = agent.locator("#agent-messages .msg", has_text="Customer: Jane Cooper")
            await expect(card).to_contain_text("Status: open")
            await expect(card).to_contain_text("Error 42 since this morning")

            # Boris answers in the topic; Jane sees it, signed.
            await agent.locator("#agent-select").select_option(label="Boris Keller")
            await agent.locator("#agent-input").fill("Please restart it and try again")
            await agent.locator("#agent-input").press("Enter")
            answer = customer.locator(".msg.in", has_text="Please restart it and try again")
            await expect(answer).to_contain_text("Boris")

            # He closes the ticket with the card's button; the card says so.
            await card.locator(".keyboard button", has_text="Close").click()
            await expect(card).to_contain_text("Status: closed")

            # Jane is asked to rate and gives five stars; the agents see them.
            asked = customer.locator(".msg.in", has_text="closed").last
            await asked.locator(".keyboard button", has_text="5").click()
            await expect(page.locator(".toast").first).to_be_visible()
            await expect(agent.locator("#agent-messages .msg",
                                       has_text="⭐⭐⭐⭐⭐")).to_be_visible()
            assert errors == [], errors
        except BaseException:
            folder = await keep_evidence(page, request.node.name, "".join(running.output))
            print(f"screenshots of both panes and the demo's output: {folder}")
            raise
        finally:
            await page.close()
        assert await running.finish(signal.SIGINT) == 0, "".join(running.output)


def tiny_png() -> bytes:
    """A real 2×2 PNG, so the browser can draw it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def test_the_agents_tools_in_the_browser(
    browser: Browser, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A photo from the customer, the slash-command menu, /note, inline mode and an
    admin closing a topic, all through the page's controls."""
    port = free_port()
    photo = tmp_path / "error.png"
    photo.write_bytes(tiny_png())
    async with demo(tmp_path, "--port", str(port)) as running:
        await running.line_matching(r"ready in", READY_TIMEOUT)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(STEP)
        customer, agent = page.locator("#customer-pane"), page.locator("#agent-pane")
        try:
            await page.goto(f"http://127.0.0.1:{port}/")
            await expect(page.locator("#status")).to_have_attribute("data-status", "online")

            # Ivan writes in Russian, then sends a photo with a caption.
            await customer.locator("#customer-tabs button", has_text="Иван").click()
            await customer.locator("#customer-input").fill("Не работает VPN")
            await customer.locator("#customer-input").press("Enter")
            await expect(customer.locator(".msg.in").last).to_contain_text("создано")
            await customer.locator("#customer-input").fill("Вот ошибка")
            await customer.locator("#customer-file").set_input_files(str(photo))
            await expect(customer.locator(".msg.out img.photo")).to_be_visible()

            await agent.locator("#topics .topic", has_text="Не работает VPN").click()
            mirrored = agent.locator("#agent-messages .msg img.photo")
            await expect(mirrored).to_be_visible()
            assert await mirrored.evaluate("img => img.naturalWidth") == 2  # the real bytes

            # The slash-command menu, then a note that stays with the agents.
            await agent.locator("#agent-input").fill("/no")
            await agent.locator("#agent-input").dispatch_event("input")
            await agent.locator("#agent-popup .item", has_text="/note").click()
            await expect(agent.locator("#agent-input")).to_have_value("/note ")
            await agent.locator("#agent-input").press_sequentially("VIP customer")
            await agent.locator("#agent-input").press("Enter")
            await expect(agent.locator("#agent-messages .msg.out",
                                       has_text="VIP customer")).to_be_visible()

            # Inline mode: find the ticket by a word and insert it.
            await agent.locator("#agent-input").fill("@deskbridge_demo_bot VPN")
            await agent.locator("#agent-input").dispatch_event("input")
            await agent.locator("#agent-popup .item", has_text="Не работает VPN").click()
            await expect(agent.locator("#agent-messages .msg .meta",
                                       has_text="via @deskbridge_demo_bot")).to_be_visible()

            # Anna, the group's owner, closes the topic from its menu: the list shows it.
            await agent.locator("#topic-toggle").click()
            await expect(agent.locator("#topics .topic.closed",
                                       has_text="Не работает VPN")).to_be_visible()
            await expect(agent.locator("#agent-messages .msg.service",
                                       has_text="Topic closed")).to_be_visible()
            assert "VIP" not in await customer.locator("#customer-messages").inner_text()
            assert errors == [], errors
        except BaseException:
            folder = await keep_evidence(page, request.node.name, "".join(running.output))
            print(f"screenshots of both panes and the demo's output: {folder}")
            raise
        finally:
            await page.close()
        assert await running.finish(signal.SIGINT) == 0, "".join(running.output)

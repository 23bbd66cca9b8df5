"""The Campaigns page in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) against a real single-process node with screening on: a wave of 200
messages that differ in a code number, from 10 senders, among texts of their own;
the page ranks it first and sorts; Block makes its rule, and the next message of
the wave is blocked within a second; the live table shows the blocks without a
reload. Screenshots go to test-artifacts/ui/."""

import asyncio
import time

from aiohttp import web

from smps._native.fingerprint import fingerprint
from smps.store import admin_users
from smps.web.ui import add_ui_routes
from tests.browser import ARTIFACTS, PASSWORD, NodeLive, chromium, playwright_api
from tests.test_proxy import BLOCK, proxy, until

WAVE, SENDERS, BACKGROUND = 200, 10, 20


def wave_text(n: int) -> bytes:
    return (
        f"Your bank code {100000 + n * 7919 % 900000} expires today, see bad.example/a{n}".encode()
    )


def background_text(n: int) -> bytes:
    word = "".join("abcdefghij"[int(d)] for d in str(n))  # digits would fold into one text
    return f"Dinner at the {word} place? Bring the game".encode()


async def test_see_the_wave_on_top_and_block_it(make_config):
    expect = playwright_api.expect
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wave = f"{fingerprint(wave_text(0).decode().casefold()):016x}"
    screening = {"enabled": True, "rules": []}
    async with proxy(make_config, accounts=[], screening=screening,
                     trace={"decode_content": True}) as (sim, node, _add_ne):  # fmt: skip
        await admin_users.add_user(node.store, "fay", PASSWORD, "admin", actor="test")
        app = web.Application()
        add_ui_routes(app, node.store, NodeLive(node), campaigns=node.campaigns)
        for n in range(WAVE):
            sender, recipient = b"86138%08d" % (n % SENDERS), b"86139%08d" % n
            sim.send_deliver(source_addr=sender, destination_addr=recipient,
                             short_message=wave_text(n))  # fmt: skip
            if n % (WAVE // BACKGROUND) == 0:
                sim.send_deliver(source_addr=b"86137%08d" % n, short_message=background_text(n))
        await until(lambda: len(sim.answers) == WAVE + BACKGROUND)
        assert {status for status, _rtt in sim.answers.values()} == {0}

        async with chromium(app) as (browser, base):
            page = await browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.goto(base + "/login")
            await page.get_by_label("User name").fill("fay")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("link", name="Campaigns").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text("Campaigns")
            rows = page.locator("table.campaigns tbody tr")
            await expect(rows).to_have_count(1 + BACKGROUND)
            top = rows.first
            await expect(top).to_have_attribute("data-fingerprint", wave)
            cells = top.locator("td")
            await expect(cells.nth(0)).to_have_text(str(WAVE))  # messages
            await expect(cells.nth(1)).to_have_text(str(SENDERS))
            await expect(cells.nth(5)).to_contain_text("bank code")  # decode_content: shown
            await expect(top.locator("svg.spark polyline")).to_have_count(1)
            await expect(page.locator("[data-campaigns-state]")).to_contain_text("Live · updated")

            messages = page.get_by_role("columnheader", name="Messages")
            await messages.get_by_role("button").click()  # the other way: fewest first
            await expect(messages).to_have_attribute("aria-sort", "ascending")
            await expect(rows.last).to_have_attribute("data-fingerprint", wave)
            await messages.get_by_role("button").click()
            await expect(rows.first).to_have_attribute("data-fingerprint", wave)
            await page.screenshot(path=ARTIFACTS / "30-campaigns.png", full_page=True)

            await page.get_by_role("button", name=f"Block campaign {wave}").click()
            await expect(page.get_by_role("status")).to_contain_text(
                f"Screening rule campaign-{wave} made"
            )
            rule = page.locator(f'tr[data-fingerprint="{wave}"] [data-rule]')
            await expect(rule).to_contain_text(f"campaign-{wave}")
            await expect(
                rule.get_by_role("button", name=f"Undo rule campaign-{wave}")
            ).to_be_visible()
            shown = time.monotonic()
            more = sim.send_deliver(source_addr=b"8613800000001", short_message=wave_text(WAVE))
            await until(lambda: more in sim.answers, timeout=1)
            assert sim.answers[more][0] == BLOCK
            assert time.monotonic() - shown < 1.0

            # The live table counts the block without a reload.
            await page.evaluate("window.notReloaded = true")
            blocked = page.locator(f'tr[data-fingerprint="{wave}"] td').nth(3)
            await expect(blocked).to_have_text("0.5%", timeout=5_000)  # 1 of 201
            assert await page.evaluate("window.notReloaded") is True
            await page.screenshot(path=ARTIFACTS / "31-campaign-blocked.png", full_page=True)

"""The trace pages in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a real node and simulated NEs: sign in as an operator, add a trace rule, watch
the traced message arrive in the live list, open its ladder (three NEs: one blocks, one
answers late, one never answers), sign out. Screenshots go to test-artifacts/ui/."""

import asyncio

from aiohttp import web

from smps.sim.ne import Latency, SimNe
from smps.store import admin_users, trace_queries
from smps.web.ui import TRACE_SETTINGS, add_ui_routes
from tests.browser import ARTIFACTS, PASSWORD, NodeLive, chromium, playwright_api
from tests.test_proxy import proxy, until


async def test_add_a_rule_see_the_message_live_and_open_its_ladder(make_config):
    expect = playwright_api.expect
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    trace = {"decode_content": True, "country_code": "86"}
    async with proxy(make_config, trace=trace, database={"flush_interval": "50ms"}) as (
        sim,
        node,
        _add_ne,
    ):
        await admin_users.add_user(node.store, "olga", PASSWORD, "operator", actor="test")
        app = web.Application()
        add_ui_routes(app, node.store, NodeLive(node))
        app[TRACE_SETTINGS] = lambda: node.config.trace
        port = node.smpp_port
        nes = [
            SimNe("127.0.0.1", port, system_id="fraud", password="pw2", block_ratio=1.0),
            SimNe("127.0.0.1", port, system_id="antispam", password="pw1", latency=Latency(0.05)),
            SimNe("127.0.0.1", port, system_id="audit", password="pw3", silent_ratio=1.0),
        ]
        async with chromium(app) as (browser, base):
            try:
                for ne in nes:
                    ne.start()
                    await ne.wait_bound()
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.goto(base + "/traces")
                await page.get_by_label("User name").fill("olga")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                await expect(page.get_by_role("heading", level=1)).to_have_text("Traced messages")
                await expect(page.locator("[data-trace-empty]")).to_contain_text("Add a trace rule")
                await page.screenshot(path=ARTIFACTS / "20-traces-empty.png", full_page=True)

                await page.get_by_role("link", name="Trace rules").click()
                await page.get_by_label("Number").fill("13800138000")
                await page.get_by_label("1 hour").check()
                await page.get_by_role("button", name="Add trace rule").click()
                await expect(page.get_by_role("status")).to_contain_text(
                    "Tracing 13800138000 until"
                )
                row = page.locator("table.data tbody tr").first
                await expect(row).to_contain_text("8613800138000")
                await expect(row).to_contain_text("user:olga")
                await page.screenshot(path=ARTIFACTS / "21-trace-rules.png", full_page=True)
                await until(lambda: node.tracer.rules)  # applied live

                await page.get_by_role("link", name="Traces", exact=True).click()
                await expect(page.locator("[data-trace-state]")).to_contain_text("Live")
                await page.evaluate("window.notReloaded = true")
                sim.send_deliver(source_addr=b"8613900139000")  # not traced
                sim.send_deliver(source_addr=b"8613800138000", short_message=b"Hello Bob")
                rows = page.locator("table.trace-list tbody tr")
                await expect(rows).to_have_count(1, timeout=10_000)
                await expect(rows.first).to_contain_text("block")
                assert await page.evaluate("window.notReloaded") is True
                await page.screenshot(path=ARTIFACTS / "22-traces-live.png", full_page=True)

                await until(lambda: len(sim.answers) == 2)
                # audit never answers: its copy gives up after the policy's 2 s.
                async with asyncio.timeout(10):
                    while True:
                        found = await trace_queries.query_traces(
                            node.store, trace_queries.TraceQuery(), limit=1
                        )
                        if found and found[0]["events"] == 8:
                            break
                        await asyncio.sleep(0.05)
                await rows.first.get_by_role("link").click()
                await expect(page.get_by_role("heading", level=1)).to_contain_text("Traced message")
                lanes = page.locator(".ladder-head .lane")
                await expect(lanes).to_have_count(5)
                assert sorted(await lanes.all_inner_texts()) == [
                    "SMPS", "SMSC smsc1", "antispam", "audit", "fraud"
                ]  # fmt: skip
                final = page.locator('li[data-kind="final"]')
                await expect(final).to_contain_text("0x66")
                await expect(page.locator("[data-final]")).to_contain_text("block")
                await expect(page.locator('li[data-kind="timeout"]')).to_contain_text("no answer")
                await expect(page.locator('tr[data-ne="antispam"]')).to_contain_text("late")
                await expect(page.locator(".sms-text")).to_have_text("Hello Bob")
                await page.screenshot(path=ARTIFACTS / "23-trace-ladder.png", full_page=True)
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.screenshot(path=ARTIFACTS / "24-trace-ladder-phone.png", full_page=True)
                await page.set_viewport_size({"width": 1280, "height": 800})

                await page.get_by_role("button", name="Sign out").click()
                await expect(page).to_have_url(base + "/login")
            finally:
                for ne in nes:
                    await ne.stop()

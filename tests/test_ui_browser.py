"""The admin UI in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a real node: sign in, create an NE account (after a form error), see a
simulated NE's bind appear on the dashboard without a reload, look at decisions
and the audit log, sign out; make a screening rule and see it fire on a message
tried on the Screening page. Screenshots of each page go to test-artifacts/ui/.
"""

import asyncio

from aiohttp import web

from smps.sim.ne import SimNe
from smps.store import admin_users
from smps.web.ui import add_ui_routes
from tests.browser import ARTIFACTS, PASSWORD, NodeLive, chromium, playwright_api
from tests.test_proxy import proxy, until


async def test_sign_in_create_account_see_its_bind_live_and_sign_out(make_config):
    expect = playwright_api.expect
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    filed = [{"system_id": "fraud", "password": "pw2"}]
    async with proxy(make_config, accounts=filed) as (sim, node, _add_ne):
        await admin_users.add_user(node.store, "alice", PASSWORD, "admin", actor="test")
        app = web.Application()
        add_ui_routes(app, node.store, NodeLive(node))
        sim_nes: list[SimNe] = []
        async with chromium(app) as (browser, base):
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.goto(base + "/")
                await expect(page).to_have_url(base + "/login?next=/")
                await page.screenshot(path=ARTIFACTS / "01-login.png")

                await page.get_by_label("User name").fill("alice")
                await page.get_by_label("Password").fill("wrong")
                await page.get_by_role("button", name="Sign in").click()
                await expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()
                await expect(page.get_by_role("heading", level=1)).to_contain_text("Dashboard")

                await page.get_by_role("link", name="NE accounts").click()
                await page.get_by_role("link", name="New NE account").click()
                await page.get_by_label("System ID").fill("antispam")
                await page.get_by_label("Password").fill("pw1")
                await page.get_by_label("Allowed IP addresses").fill("127.0.0.1")
                await page.get_by_label("Window").fill("0")
                await page.get_by_role("button", name="Create account").click()
                window_error = page.locator("#window-error")
                await expect(window_error).to_have_text("must be at least 1")
                await page.screenshot(path=ARTIFACTS / "02-account-form-error.png", full_page=True)
                await page.get_by_label("Password").fill("pw1")  # never echoed back
                await page.get_by_label("Window").fill("32")
                await page.get_by_role("button", name="Create account").click()
                await expect(page.get_by_role("status")).to_have_text(
                    "NE account antispam created."
                )
                await page.screenshot(path=ARTIFACTS / "03-accounts.png", full_page=True)

                await page.get_by_role("link", name="Dashboard").click()
                await expect(page.locator("[data-live-state]")).to_contain_text("Live")
                binds = page.locator('[data-live-bind="antispam"]')
                await expect(binds).to_have_text("0")
                await page.evaluate("window.notReloaded = true")

                ne = SimNe("127.0.0.1", node.smpp_port, system_id="antispam", password="pw1")
                sim_nes.append(ne)
                ne.start()
                await ne.wait_bound()
                await expect(binds).to_have_text("1", timeout=10_000)
                assert await page.evaluate("window.notReloaded") is True
                await expect(page.locator('[data-live="ne_binds_total"]')).to_have_text("1")

                # Some traffic, so the chart, the decisions and the rates have something.
                for _ in range(40):
                    sim.send_deliver()
                await until(lambda: len(sim.answers) == 40)
                await until(lambda: node.writer.written >= 40)
                await expect(page.locator('[data-live="received"]')).to_have_text("40")
                # The chart's per-minute counts come from the verdict totals, read each
                # second: reload until they are in.
                allow_bars = page.locator("svg.chart rect.bar-allow")
                async with asyncio.timeout(10):
                    while not await allow_bars.count():
                        await asyncio.sleep(0.25)
                        await page.reload()
                await expect(allow_bars).to_have_count(1)
                await page.screenshot(path=ARTIFACTS / "04-dashboard.png", full_page=True)

                await page.get_by_role("link", name="Decisions").click()
                await expect(page.locator("table.data tbody tr")).to_have_count(40)
                await page.screenshot(path=ARTIFACTS / "05-decisions.png", full_page=True)

                await page.get_by_role("link", name="Audit log").click()
                await expect(page.locator("table.data tbody tr").first).to_contain_text(
                    "user:alice"
                )
                await page.screenshot(path=ARTIFACTS / "06-audit.png", full_page=True)

                await page.get_by_role("link", name="Policy").click()
                await expect(page.get_by_label("Verdict timeout")).to_have_value("2s")
                await page.screenshot(path=ARTIFACTS / "08-policy.png", full_page=True)

                await page.set_viewport_size({"width": 390, "height": 844})
                await page.get_by_role("link", name="Dashboard").click()
                await expect(page.locator("[data-live-state]")).to_contain_text("Live")
                await page.screenshot(path=ARTIFACTS / "07-dashboard-phone.png", full_page=True)
                await page.set_viewport_size({"width": 1280, "height": 800})

                await page.keyboard.press("Tab")  # the skip link comes first
                focused = await page.evaluate("document.activeElement.textContent")
                assert focused == "Skip to content"

                await page.get_by_role("button", name="Sign out").click()
                await expect(page).to_have_url(base + "/login")
                await page.goto(base + "/accounts")
                await expect(page).to_have_url(base + "/login?next=/accounts")
            finally:
                for ne in sim_nes:
                    await ne.stop()


async def test_smsc_routes_sessions_and_users_pages(make_config):
    """Screenshots of the SMSC, routes, sessions and users pages against a real node,
    with one real NE bind to kick."""
    expect = playwright_api.expect
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    accounts = [{"system_id": "antispam", "password": "pw1"}]
    async with proxy(make_config, accounts=accounts) as (_sim, node, _add_ne):
        await admin_users.add_user(node.store, "alice", PASSWORD, "admin", actor="test")
        app = web.Application()
        add_ui_routes(app, node.store, NodeLive(node))
        ne = SimNe("127.0.0.1", node.smpp_port, system_id="antispam", password="pw1")
        ne.start()
        async with chromium(app) as (browser, base):
            try:
                await ne.wait_bound()
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await page.goto(base + "/login")
                await page.get_by_label("User name").fill("alice")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Sign in").click()

                await page.get_by_role("link", name="SMSC connections").click()
                await expect(page.locator("table.data tbody tr")).to_have_count(1)
                await page.screenshot(path=ARTIFACTS / "10-smsc.png", full_page=True)
                await page.get_by_role("link", name="New SMSC connection").click()
                await page.get_by_label("Name", exact=True).fill("backup")
                await page.get_by_label("Host").fill("127.0.0.1")
                await page.get_by_label("Port").fill("70000")
                await page.get_by_label("System ID").fill("smps")
                await page.get_by_role("button", name="Create connection").click()
                await expect(page.locator("#port-error")).to_be_visible()
                await page.screenshot(path=ARTIFACTS / "11-smsc-form-error.png", full_page=True)

                await page.get_by_role("link", name="Routes").click()
                await page.screenshot(path=ARTIFACTS / "12-routes-empty.png", full_page=True)
                await page.get_by_role("link", name="New route").click()
                await page.get_by_label("Name", exact=True).fill("china")
                await page.get_by_label("antispam").check()
                await page.get_by_label("Destination prefixes").fill("86")
                await page.get_by_role("button", name="Create route").click()
                await expect(page.get_by_role("status")).to_contain_text("Route china created")
                await page.screenshot(path=ARTIFACTS / "13-routes.png", full_page=True)

                await page.get_by_role("link", name="Sessions").click()
                await page.screenshot(path=ARTIFACTS / "14-sessions.png", full_page=True)
                await page.get_by_role("button", name="Kick the binds of antispam").click()
                await expect(page.get_by_role("status")).to_have_text("Unbound 1 bind of antispam.")

                await page.get_by_role("link", name="Users").click()
                await page.get_by_role("link", name="Add user").click()
                await page.get_by_label("User name").fill("bob")
                await page.get_by_label("Password").fill("short")
                await page.get_by_label("Operator").check()
                await page.get_by_role("button", name="Add user").click()
                await expect(page.locator("#password-error")).to_have_text("at least 8 characters")
                await page.screenshot(path=ARTIFACTS / "15-user-form-error.png", full_page=True)
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Add user").click()
                await expect(page.get_by_role("status")).to_have_text("User bob added as operator.")
                await page.screenshot(path=ARTIFACTS / "16-users.png", full_page=True)
                await page.get_by_role("link", name="Change role or password of bob").click()
                await page.screenshot(path=ARTIFACTS / "17-user-edit.png", full_page=True)

                await page.get_by_role("link", name="Audit log").click()
                await expect(page.locator("table.data tbody")).to_contain_text("kick")
                await page.set_viewport_size({"width": 390, "height": 844})
                await page.get_by_role("link", name="Sessions").click()
                await page.screenshot(path=ARTIFACTS / "18-sessions-phone.png", full_page=True)
            finally:
                await ne.stop()


async def test_screening_rule_made_and_a_message_tried_on_the_page(make_config):
    """A keyword rule made on the Screening page fires on a message tried there, with
    the node's live rules (the single-process node's trial)."""
    expect = playwright_api.expect
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    vip = {"id": "vip", "type": "list", "field": "destination", "entries": ["prefix:8613999"],
           "action": "allow"}  # fmt: skip
    screening = {"enabled": True, "rules": [vip]}
    async with proxy(make_config, accounts=[], screening=screening) as (_sim, node, _add_ne):
        await admin_users.add_user(node.store, "alice", PASSWORD, "admin", actor="test")
        app = web.Application()
        add_ui_routes(app, node.store, NodeLive(node), screening=node.screening)
        async with chromium(app) as (browser, base):
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(base + "/login")
            await page.get_by_label("User name").fill("alice")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Sign in").click()

            await page.get_by_role("link", name="Screening").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Screening")
            await page.get_by_role("link", name="New rule").click()
            await page.get_by_label("Rule ID").fill("spam-words")
            await page.get_by_label("Type").select_option("keyword")
            await page.get_by_label("Block: the SMSC gets").check()
            await page.get_by_role("button", name="Create rule").click()
            await expect(page.locator("#patterns-error")).to_have_text(
                "a keyword rule needs at least one pattern"
            )
            await page.screenshot(path=ARTIFACTS / "30-screening-form-error.png", full_page=True)
            await page.get_by_label("Patterns").fill("free iphone\nyou have won")
            await page.get_by_role("button", name="Create rule").click()
            await expect(page.get_by_role("status")).to_have_text(
                "Screening rule spam-words created; every worker applies it now."
            )

            await page.get_by_label("From", exact=True).fill("8613811112222")
            await page.get_by_label("To", exact=True).fill("8613911112222")
            await page.get_by_label("Text", exact=True).fill("Get your FREE iPhone now")
            await page.get_by_role("button", name="Try message").click()
            result = page.locator("[data-trial]")
            await expect(result.get_by_role("heading")).to_have_text("Verdict: block by spam-words")
            await expect(result.locator("tbody tr")).to_have_count(1)
            await expect(result.locator("tbody th")).to_have_text("spam-words")
            await expect(result).to_contain_text("no NE gets a copy")
            await page.screenshot(path=ARTIFACTS / "31-screening-tried.png", full_page=True)

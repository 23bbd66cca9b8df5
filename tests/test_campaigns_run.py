"""The campaign view on `smps run` with 2 workers and an SMSC whose PDUs smpplib
builds (one bind per worker): background texts all different, and a wave of
2,000 messages that differ only in a code number and the recipient, from 50
senders over both binds. The API ranks the wave first with its counts (the admin
UI's Campaigns page lists it too, from the master's merged tables); a Block
through the API blocks the rest of the wave within a second, without a restart."""

import asyncio
import contextlib
import time

import aiohttp

from smps._native.fingerprint import fingerprint
from smps.store import admin_users, tokens
from smps.store.db import Store
from tests.helpers import until
from tests.smpplib_smsc import answers, smpplib_node

BLOCK, ALLOW = 0x66, 0
WAVE, SENDERS, BACKGROUND = 2000, 50, 300


def wave_text(n: int) -> bytes:
    code = 100000 + n * 7919 % 900000
    return f"Your bank code {code} expires today, log in at bad.example/a{n}".encode()


def background_text(n: int) -> bytes:
    """A text of its own: digits fold into one campaign, so the words differ."""
    word = "".join("abcdefghijklmnopqrstuvwxyz"[int(d)] for d in str(n))
    return f"Hi, dinner at the {word} place? Bring the game".encode()


@contextlib.asynccontextmanager
async def campaign_node(tmp_path):
    # Screening on with no rule yet: the Block button makes the first.
    over = {"screening": {"enabled": True, "rules": []}, "trace": {"decode_content": True}}
    async with smpplib_node(tmp_path, **over) as (smsc, node):
        store = await Store.open(f"sqlite:///{node.dir / 'var' / 'smps.db'}", migrate=False)
        try:
            token = await tokens.create_token(store, "fraud-team", "admin")
            await admin_users.add_user(store, "fay", "correct horse", "viewer", actor="test")
        finally:
            await store.close()
        base = f"http://127.0.0.1:{node.report['http_port']}/api/v1"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as api:
            yield smsc, node, api, base


async def test_a_wave_ranks_first_and_one_block_stops_the_rest_of_it(tmp_path):
    async with campaign_node(tmp_path) as (smsc, node, api, base):
        sent = []
        for n in range(WAVE):
            sender = f"86138{n % SENDERS:08d}"
            sent.append(smsc.deliver(n % 2, sender, f"86139{n:08d}", wave_text(n)))
            if n % (WAVE // BACKGROUND) == 0:
                sent.append(smsc.deliver(n % 2, f"86137{n:08d}", "8613900000001",
                                         background_text(n)))  # fmt: skip
            if n % 200 == 0:
                await answers(smsc, sent)  # keep the SMSC's windows from filling
        assert set(await answers(smsc, sent)) == {ALLOW}

        async with api.get(f"{base}/campaigns", params={"window": "5m", "limit": "5"}) as got:
            assert got.status == 200, await got.text()
            listing = await got.json()
        top = listing["campaigns"][0]
        wave = f"{fingerprint(wave_text(0).decode()):016x}"
        assert top["fingerprint"] == wave
        assert top["messages"] == WAVE and top["error"] == 0
        assert abs(top["senders"] - SENDERS) <= SENDERS * 0.05
        assert abs(top["recipients"] - WAVE) <= WAVE * 0.05
        assert top["blocked"] == 0 and top["rule"] is None
        assert "bank code" in top["example"]  # trace.decode_content: shown
        assert listing["campaigns"][1]["messages"] == 1  # the background: all different

        # The admin UI's Campaigns page reads the same merged tables.
        ui = f"http://127.0.0.1:{node.report['http_port']}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            await browser.post(f"{ui}/login", data={"name": "fay", "password": "correct horse"})
            async with browser.get(f"{ui}/campaigns", params={"window": "5m"}) as page:
                assert page.status == 200
                assert f'<tr data-fingerprint="{wave}">' in await page.text()

        workers = [w["pid"] for w in node.status()["workers"]]
        async with api.post(f"{base}/campaigns/{wave}/block") as made:
            assert made.status == 201, await made.text()
        blocked_at = time.monotonic()

        async def wave_blocked() -> bool:
            more = [smsc.deliver(b, "8613800000001", f"861390{b}", wave_text(WAVE + b))
                    for b in (0, 1)]  # fmt: skip
            return await answers(smsc, more) == [BLOCK, BLOCK]

        await until(wave_blocked, timeout=5, interval=0.02)
        assert time.monotonic() - blocked_at < 1.0  # live on both workers within a second
        assert [w["pid"] for w in node.status()["workers"]] == workers  # no restart

        other = smsc.deliver(0, "8613700000042", "8613900000002", b"See you at 8")
        assert await answers(smsc, [other]) == [ALLOW]
        await asyncio.sleep(0.1)
        async with api.get(f"{base}/campaigns", params={"window": "5m"}) as got:
            top = (await got.json())["campaigns"][0]
        assert top["fingerprint"] == wave and top["rule"] == f"campaign-{wave}"
        assert top["blocked"] >= 2
        blocks = [c for c in top["by_cause"] if c["outcome"] == "block"]
        assert [c["cause"] for c in blocks] == [f"campaign-{wave}"]
        assert "smps_campaign_blocks_total" in node.metrics_text()
        async with api.post(f"{base}/campaigns/{wave}/block") as again:
            assert again.status == 409  # the campaign has its rule already

        # Undo: the rule goes, the wave passes again.
        async with api.delete(f"{base}/screening/rules/campaign-{wave}") as undone:
            assert undone.status == 204

        async def wave_passes() -> bool:
            more = [smsc.deliver(b, "8613800000002", f"861391{b}", wave_text(WAVE + 9))
                    for b in (0, 1)]  # fmt: skip
            return await answers(smsc, more) == [ALLOW, ALLOW]

        await until(wave_passes, timeout=5, interval=0.05)

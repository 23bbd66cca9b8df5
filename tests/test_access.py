"""Day-two access management: API tokens listed and revoked, admin users listed, given a
new password, disabled and enabled, the same through `smps token|user`, /api/v1 and the
Users page, every change audited; a revoked token gets 401 at once, over the API and
over the `smps` commands that use it. A real node (in process) on loopback, the commands
as subprocesses on its SQLite database."""

import asyncio
import subprocess

import aiohttp
import yaml

from smps.store import admin_users, audit_log, tokens
from smps.web import auth
from tests.test_cli import run_cli
from tests.test_proxy import proxy


async def smps(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The command in a thread: the node answering it runs in this test's loop."""
    return await asyncio.to_thread(run_cli, *args, input=stdin)


async def test_a_revoked_token_gets_401_at_once_over_the_api_and_the_cli(make_config, tmp_path):
    async with proxy(make_config, state_dir=tmp_path) as (_sim, node, _add_ne):
        config = tmp_path / "cli.yaml"
        config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path}/smps.db"}}))
        admin = await tokens.create_token(node.store, "admin-token", "admin")
        ops = await tokens.create_token(node.store, "ops", "operator")
        script = await tokens.create_token(node.store, "script", "viewer")
        url = f"http://127.0.0.1:{node.http_port}"
        api = f"{url}/api/v1"

        async def trace_list(token: str) -> subprocess.CompletedProcess:
            return await smps("trace", "list", "--url", url, "--token", token)

        assert (await trace_list(ops)).returncode == 0
        listed = await smps("token", "list", "-c", str(config))
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[1:3] for line in listed.stdout.splitlines()[1:]] == [
            ["admin-token", "admin"],
            ["ops", "operator"],
            ["script", "viewer"],
        ]
        async with aiohttp.ClientSession() as http:

            async def get(path: str, token: str) -> int:
                headers = {"Authorization": f"Bearer {token}"}
                async with http.get(f"{api}{path}", headers=headers) as response:
                    return response.status

            async def post(path: str, token: str, body=None) -> tuple[int, dict]:
                headers = {"Authorization": f"Bearer {token}"}
                async with http.post(f"{api}{path}", headers=headers, json=body) as response:
                    return response.status, await response.json()

            async with http.get(f"{api}/tokens", headers={"Authorization": f"Bearer {admin}"}) as r:
                items = (await r.json())["items"]
            ids = {item["name"]: item["id"] for item in items}
            assert all("token_hash" not in item and not item["revoked"] for item in items)
            assert await get("/tokens", ops) == 403  # only admins manage tokens

            # Over the API: the operator's token, revoked by an admin.
            status, body = await post(f"/tokens/{ids['ops']}/revoke", admin)
            assert (status, body["name"], body["revoked"]) == (200, "ops", True)
            assert await get("/decisions", ops) == 401
            refused = await trace_list(ops)
            assert refused.returncode == 1 and "refused the token" in refused.stderr

            # Over the CLI: the script's token.
            assert await get("/decisions", script) == 200
            revoked = await smps("token", "revoke", str(ids["script"]), "-c", str(config))
            assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
            assert await get("/decisions", script) == 401
            assert "refused the token" in (await trace_list(script)).stderr
            assert (await smps("token", "revoke", "999", "-c", str(config))).returncode == 1
            assert await get("/decisions", admin) == 200

        entries = await audit_log.audit_entries(node.store, limit=10)
    revocations = [
        (e["actor"], e["entity"], e["entity_key"]) for e in entries if e["entity"] == "tokens"
    ]
    assert sorted(revocations) == [
        ("cli", "tokens", str(ids["script"])),
        ("token:admin-token", "tokens", str(ids["ops"])),
    ]


async def test_users_listed_given_a_password_disabled_and_enabled_by_cli_and_api(
    make_config, tmp_path
):
    async with proxy(make_config, state_dir=tmp_path) as (_sim, node, _add_ne):
        config = str(tmp_path / "cli.yaml")
        (tmp_path / "cli.yaml").write_text(
            yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path}/smps.db"}})
        )
        add = ("user", "add", "alice", "--role", "admin", "--password-stdin", "-c", config)
        added = await smps(*add, stdin="first password\n")
        assert added.returncode == 0, added.stderr
        await admin_users.add_user(node.store, "bob", "bob password", "viewer", actor="test")
        listed = await smps("user", "list", "-c", config)
        assert [line.split()[:3] for line in listed.stdout.splitlines()[1:]] == [
            ["alice", "admin", "enabled"],
            ["bob", "viewer", "enabled"],
        ]
        changed = await smps("user", "passwd", "bob", "--password-stdin", "-c", config,
                       stdin="second password\n")  # fmt: skip
        assert changed.returncode == 0, changed.stderr
        assert await auth.check_password(node.store, "bob", "second password")
        assert (await smps("user", "disable", "bob", "-c", config)).returncode == 0
        assert await auth.check_password(node.store, "bob", "second password") is None
        last = await smps("user", "disable", "alice", "-c", config)  # the last enabled admin
        assert last.returncode == 1 and "last admin" in last.stderr

        admin = await tokens.create_token(node.store, "admin-token", "admin")
        headers = {"Authorization": f"Bearer {admin}"}
        api = f"http://127.0.0.1:{node.http_port}/api/v1"
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{api}/users/bob/enable") as response:
                assert response.status == 200
            async with http.post(f"{api}/users/bob/password", json={"password": "short"}) as r:
                assert (r.status, (await r.json())["field"]) == (422, "password")
            async with http.post(f"{api}/users/bob/password", json={"password": "third pass"}) as r:
                assert r.status == 200
            async with http.get(f"{api}/users") as response:
                users = {u["name"]: u for u in (await response.json())["items"]}
        assert users["bob"]["enabled"] and "password_hash" not in users["bob"]
        assert await auth.check_password(node.store, "bob", "third pass")
        entries = await audit_log.audit_entries(node.store, limit=20)
    changes = [
        (e["actor"], e["action"], e["entity_key"])
        for e in reversed(entries)
        if e["entity"] == "users"
    ]
    assert changes == [
        ("cli", "create", "alice"),
        ("test", "create", "bob"),
        ("cli", "update", "bob"),  # password
        ("cli", "update", "bob"),  # disabled
        ("token:admin-token", "update", "bob"),  # enabled
        ("token:admin-token", "update", "bob"),  # password
    ]

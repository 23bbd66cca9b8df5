"""SMSC connections made, changed and deleted through /api/v1 reach the workers
of a running `smps run` live: each worker binds a new SMSC, rebinds one whose
address changed, keeps one whose decoding settings alone changed, and unbinds a
deleted one; the file's SMSC keeps its binds (same sessions, no rebind). The
single-process node (`smps demo`) follows the same way."""

from smps._native.pdu import CommandId, Status
from smps.sim.smsc import SimSmsc
from smps.store import entities
from tests.helpers import until
from tests.test_proxy import proxy
from tests.test_run_store import running


async def test_smsc_made_moved_and_deleted_through_the_api_follow_live(tmp_path):
    second, third = (
        SimSmsc(system_id="smps2", password="pw2"),
        SimSmsc(system_id="smps2", password="pw2"),
    )
    second_port, third_port = await second.start(), await third.start()
    try:
        async with running(tmp_path) as (sim, node, api, _nes):
            file_sessions = set(sim.bound_sessions)
            assert len(file_sessions) == 2  # one per worker
            attempts = len(sim.bind_attempts)

            smsc2 = {
                "name": "smsc2",
                "host": "127.0.0.1",
                "port": second_port,
                "system_id": "smps2",
                "password": "pw2",
                "reconnect": {"initial": "100ms", "max": "500ms"},
            }
            async with api.post("smsc", json=smsc2) as response:
                assert response.status == 201, await response.text()
            await second.wait_bound(2)  # each worker binds the new SMSC
            await until(lambda: node.status()["smsc_binds"].get("smsc2") == 2)
            number = second.send_deliver(short_message=b"from smsc2")
            await until(lambda: number in second.answers)
            assert second.answers[number][0] == Status.ROK

            # Decoding settings apply to the live binds: no rebind.
            bound = set(second.bound_sessions)
            async with api.patch("smsc/smsc2", json={"default_alphabet": "latin1"}) as response:
                assert response.status == 200, await response.text()
            number = second.send_deliver(short_message=b"still here")
            await until(lambda: number in second.answers)
            assert set(second.bound_sessions) == bound and len(second.bind_attempts) == 2

            # A new port: the binds move, the old ones unbind politely.
            async with api.patch("smsc/smsc2", json={"port": third_port}) as response:
                assert response.status == 200, await response.text()
            await third.wait_bound(2)
            await until(lambda: not second.bound_sessions)
            assert all(s.stats.pdus_in.get(CommandId.UNBIND) for s in bound)

            moved = set(third.bound_sessions)
            async with api.delete("smsc/smsc2") as response:
                assert response.status == 204, await response.text()
            await until(lambda: not third.bound_sessions)
            assert all(s.stats.pdus_in.get(CommandId.UNBIND) for s in moved)
            await until(lambda: "smsc2" not in node.status()["smsc_binds"])

            # The file's SMSC never noticed.
            assert set(sim.bound_sessions) == file_sessions
            assert len(sim.bind_attempts) == attempts
            number = sim.send_deliver(short_message=b"file smsc")
            await until(lambda: number in sim.answers)
    finally:
        await second.stop()
        await third.stop()


async def test_single_process_node_follows_the_smsc_list(make_config):
    other = SimSmsc()
    port = await other.start()
    try:
        async with proxy(make_config) as (sim, node, _add_ne):
            file_sessions = set(sim.bound_sessions)
            kind = entities.KINDS["smsc"]
            smsc2 = {"name": "smsc2", "host": "127.0.0.1", "port": port, "system_id": "smps",
                     "password": "secret"}  # fmt: skip
            await entities.create(node.store, kind, smsc2, "test")
            await other.wait_bound(1)
            bound = set(other.bound_sessions)
            await entities.delete_entity(node.store, kind, "smsc2", "test")
            await until(lambda: not other.bound_sessions)
            assert all(s.stats.pdus_in.get(CommandId.UNBIND) for s in bound)
            assert set(sim.bound_sessions) == file_sessions and len(sim.bind_attempts) == 1
    finally:
        await other.stop()

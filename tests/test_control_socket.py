"""The control socket (smps.runtime.control_socket): the master's side, served in
this process, and the one client `smps status`, `smps ha` and the tests use."""

import asyncio
import contextlib
import json

import pytest

from smps.runtime import control_socket
from smps.runtime.control_socket import ask, request, socket_path


@contextlib.asynccontextmanager
async def serving(state_dir, answer):
    server = await control_socket.serve(state_dir, answer)
    try:
        yield
    finally:
        control_socket.close(server, state_dir)


async def test_one_request_one_answer_and_refusals(tmp_path):
    asked = []

    async def answer(message):
        asked.append(message)
        if message.get("cmd") == "status":
            return {"role": "active"}
        return {"error": f"unknown command {message.get('cmd')!r}"}

    async with serving(tmp_path, answer):
        assert await asyncio.to_thread(request, tmp_path, {"cmd": "status"}) == {"role": "active"}
        refused = await asyncio.to_thread(request, tmp_path, {"cmd": "nope"})
        assert refused == {"error": "unknown command 'nope'"}

        # A line that is not JSON is answered with an error, without reaching `answer`.
        reader, writer = await asyncio.open_unix_connection(str(socket_path(tmp_path)))
        writer.write(b"not json\n")
        assert "error" in json.loads(await reader.readline())
        writer.close()
        await writer.wait_closed()
    assert asked == [{"cmd": "status"}, {"cmd": "nope"}]
    assert not socket_path(tmp_path).exists()  # closing removes the socket file


async def test_the_timeout_covers_the_whole_answer(tmp_path):
    """A node that answers a byte at a time cannot keep the client (keepalived's
    check, on a budget of a second) waiting past its timeout."""

    done = asyncio.Event()

    async def dribble(reader, writer):
        await reader.readline()
        with contextlib.suppress(ConnectionError):
            for byte in b'{"healthy": true}\n':  # 1.8 s in all
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        writer.close()
        done.set()

    server = await asyncio.start_unix_server(dribble, str(socket_path(tmp_path)))
    try:
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(request, tmp_path, {"cmd": "ha.check"}, 0.5)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        server.close()


def test_ask_says_why_there_is_no_answer(tmp_path, capsys):
    assert ask(tmp_path, {"cmd": "status"}, timeout=1.0) is None
    assert f"smps: no running node at {tmp_path / 'smps.sock'}" in capsys.readouterr().err

"""The bare relay (bench/bare_relay.py), the yardstick of `smps bench --baseline`, on
real sockets between the simulated SMSC and simulated NEs: one answer per original,
ESME_ROK when every NE allowed, the first block otherwise, as soon as it comes."""

import pytest

from bench import bare_relay
from smps._native.pdu import CommandId, Status
from smps.sim.ne import Latency, SimNe
from smps.sim.smsc import SimSmsc
from tests.helpers import free_port, until

ORIGINALS = 10


@pytest.fixture
async def relay():
    """A simulated SMSC with the bare relay bound to it once (so that its answers come
    in the order it wrote them); yields (smsc, relay, the NEs' port)."""
    smsc = SimSmsc(system_id="smps", password="secret")
    smsc_port = await smsc.start()
    ne_port = free_port()
    args = ["--smsc-port", str(smsc_port), "--listen", f"127.0.0.1:{ne_port}", "--binds", "1"]
    relay, server = await bare_relay.start(bare_relay.parse(args))
    await smsc.wait_bound(1)
    yield smsc, relay, ne_port
    server.close()
    await smsc.stop()


async def answers_with(relay, *nes: dict) -> tuple[dict[int, tuple[int, float]], list[SimNe]]:
    """Bind one NE account (2 binds) per options dict, send ORIGINALS deliver_sm and
    data_sm, wait for every answer of the NEs and of the relay: (the SMSC's answers
    by message number, the NEs)."""
    smsc, bare, ne_port = relay
    accounts = [
        SimNe("127.0.0.1", ne_port, system_id=f"ne{i}", password="pw", binds=2, **options)
        for i, options in enumerate(nes)
    ]
    for ne in accounts:
        ne.start()
    try:
        for ne in accounts:
            await ne.wait_bound()
        for n in range(ORIGINALS):
            smsc.send_deliver(command_id=CommandId.DATA_SM if n % 2 else CommandId.DELIVER_SM)
        await until(lambda: all(ne.answered == ORIGINALS for ne in accounts))
        await until(lambda: not bare.waiting)  # every NE answer read
    finally:
        for ne in accounts:
            await ne.stop()
    answers = dict(smsc.answers)
    # With no NE bound an original is allowed at once; as it comes after every answer
    # the relay wrote, none came twice if none came before it.
    await until(lambda: not bare.next_binds)
    probe = smsc.send_deliver()
    await until(lambda: probe in smsc.answers)
    assert smsc.answers[probe][0] == Status.ROK
    assert smsc.duplicates == smsc.missing == 0
    return answers, accounts


def statuses(answers: dict[int, tuple[int, float]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for status, _rtt in answers.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


async def test_every_ne_allowing_answers_rok_once(relay):
    answers, nes = await answers_with(relay, {}, {}, {})
    # deliver_sm_resp and data_sm_resp: the SMSC's session matched each to its request
    assert statuses(answers) == {Status.ROK: ORIGINALS}
    assert [ne.received for ne in nes] == [ORIGINALS] * 3  # a copy for every account


async def test_a_block_wins_even_when_it_comes_last(relay):
    answers, nes = await answers_with(relay, {}, {"block_ratio": 1.0, "latency": Latency(0.1)}, {})
    assert statuses(answers) == {Status.RX_R_APPN: ORIGINALS}  # the NE's own block status
    assert nes[1].blocked == ORIGINALS and nes[0].allowed == nes[2].allowed == ORIGINALS
    # it waited for the blocking NE, the last to answer
    assert min(rtt for _status, rtt in answers.values()) >= 0.1


async def test_the_first_block_answers_without_waiting_for_the_others(relay):
    block = {"block_ratio": 1.0}
    answers, nes = await answers_with(
        relay, block, {**block, "latency": Latency(0.2)}, {"latency": Latency(0.5)}
    )
    assert statuses(answers) == {Status.RX_R_APPN: ORIGINALS}
    # answered at the first block, not at the second or when the slow NE allowed; their
    # answers added none
    assert max(rtt for _status, rtt in answers.values()) < 0.2
    assert nes[1].blocked == nes[2].allowed == ORIGINALS

"""What the content fingerprint (smps._native.fingerprint) costs per original in
a scenario: timed here, in this process, over the scenario's own texts (whole
messages, as the dispatcher fingerprints them), so that every `smps bench`
report shows it beside the run's CPU figures (issue 22's target: 0.3 µs)."""

import time

from bench.loadrun.scenario import Scenario
from smps._native.fingerprint import fingerprint
from smps._native.pdu import decode_sm
from smps._native.text import plain_text, reassemble
from smps.sim.traffic import Mix, Traffic

ROUNDS = 20  # passes over the pool: enough for a steady figure, a fraction of a second


def texts(scenario: Scenario) -> list[str]:
    """The scenario's messages as texts: a long one whole, binary data left out."""
    traffic = Traffic(Mix(**scenario.mix), long=scenario.long_messages)
    found = []
    for _kind, pdus in traffic.pool:
        views = [decode_sm(pdu) for pdu in pdus]
        first = views[0]
        if len(views) == 1:
            text = plain_text(first.user_data, first.data_coding, first.esm_class)
        else:
            parts = [(number, v.user_data) for number, v in enumerate(views, 1)]
            text = reassemble(parts, first.data_coding, first.esm_class).text
        if text:
            found.append(text)
    return found


def fingerprint_us(scenario: Scenario) -> float:
    """Microseconds per fingerprint over the scenario's texts (best of the rounds)."""
    pool = texts(scenario)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for text in pool:
            fingerprint(text)
        best = min(best, (time.perf_counter_ns() - started) / len(pool))
    return round(best / 1000, 3)

"""The master as the admin UI sees it (`smps.web.node.NodeView`): live numbers
summed over the workers' stats reports, and kicking a bind through them."""

import time

from smps.runtime import status
from smps.runtime.metrics import split_sample_key, sum_tables
from smps.web.node import LatencyWindow, LiveStatus, SmscLive


class MasterView:
    def __init__(self, master):
        self.master = master
        self.latency = LatencyWindow()

    def live_status(self) -> LiveStatus:
        master = self.master
        report = status.report(master)
        counters = sum_tables(slot.totals.counters() for slot in master.supervisor.slots)
        verdicts: dict[str, int] = {}
        answered: dict[str, list[float]] = {}  # account -> [seconds, answers]
        for sample_key, value in counters.items():
            name, labels, values = split_sample_key(sample_key)
            if name == "smps_verdicts_total":
                verdict = dict(zip(labels, values, strict=True))["verdict"]
                verdicts[verdict] = verdicts.get(verdict, 0) + int(value)
            elif name in ("smps_ne_answer_seconds_sum", "smps_ne_answer_seconds_count"):
                account = dict(zip(labels, values, strict=True))["account"]
                sums = answered.setdefault(account, [0.0, 0])
                sums[name.endswith("_count")] += value
        binds_per_worker = {smsc.name: smsc.binds for smsc in master.live_config.smsc}
        workers = len(master.supervisor.slots)
        return LiveStatus(
            node=report["node"],
            role=report["role"],
            workers=workers,
            uptime_s=report["uptime_s"],
            smsc=[
                SmscLive(
                    name=name, binds_up=report["smsc_binds"].get(name, 0), binds=binds * workers
                )
                for name, binds in binds_per_worker.items()
            ],
            ne_binds=report["ne_binds"],
            received=int(counters.get("smps_originals_received_total", 0)),
            in_flight=report["in_flight"],
            verdicts=verdicts,
            ne_latency_ms=self.latency.mean_ms(answered, time.monotonic()),
        )

    def kick(self, system_id: str) -> int:
        count = status.ne_binds(self.master).get(system_id, 0)
        self.master.kick(system_id)
        return count

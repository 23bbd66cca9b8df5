"""The master as the admin UI sees it (`smps.web.node.NodeView`): live numbers
summed over the workers' stats reports, and kicking a bind through them."""

import time

from smps.runtime import status
from smps.runtime.stats import add, verdict_totals
from smps.web.node import LatencyWindow, LiveStatus, SmscLive


class MasterView:
    def __init__(self, master):
        self.master = master
        self.latency = LatencyWindow()

    def live_status(self) -> LiveStatus:
        master = self.master
        report = status.report(master)
        counters = add(*(slot.counters() for slot in master.supervisor.slots))
        verdicts = {
            verdict: n for (kind, verdict), n in verdict_totals(counters).items() if not kind
        }
        answered = {  # account -> (seconds, answers)
            account: (latency.seconds, latency.count)
            for account, latency in counters.ne_answer_seconds.items()
        }
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
            received=counters.originals_received,
            in_flight=report["in_flight"],
            verdicts=verdicts,
            ne_latency_ms=self.latency.mean_ms(answered, time.monotonic()),
        )

    async def reload(self) -> str:
        return await self.master.reload()

    def kick(self, system_id: str) -> int:
        count = status.ne_binds(self.master).get(system_id, 0)
        self.master.kick(system_id)
        return count

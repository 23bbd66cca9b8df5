"""`smps bench`: one load run of SMPS, reported as throughput, added latency and
proxy CPU time per message (docs/architecture.md §6).

Three kinds of process take part, so that the proxy's CPU time can be read on
its own and the load generators never share its event loop:

- SMPS itself: `smps run -c <generated config>` (sqlite in a temp dir,
  `record: non_allow`, 100 trace rules), or with --no-start one that already
  runs with the user's configuration;
- the simulated SMSC (`SimSmsc` on uvloop, in a spawned process): it listens,
  SMPS binds to it, and it sends the pre-encoded standard mix at a fixed rate
  or as fast as its window allows; it also takes the measurements, so that the
  interval's start and end are the same instants for every figure;
- the simulated NEs (`SimNe` accounts on uvloop, in one spawned process).

On a machine with more CPUs than workers, SMPS is pinned to the first
`workers` CPUs and the generators to the others, so that they do not steal
the proxy's core; their CPU time is reported too, to show they were not the
bottleneck.

The run: start everything, wait for every bind, send for `warmup` seconds
(JIT-free Python still warms caches, pools and the SQLite file), then measure
for `duration` seconds, then let the last answers in and stop. Figures cover
the measured interval only:

- messages/s decided: originals (PDUs) answered per second;
- added latency: the SMSC's send-to-response time minus the NE think time
  (`--ne-latency`, fixed); with the standard NE latency of 0 it is exactly
  what the SMSC observes;
- proxy CPU µs/message: user+system time of SMPS's processes (the one given
  and its descendants, from /proc) ÷ messages decided;
- throttled: answers with ESME_RTHROTTLED; timeouts: answers that came at or
  after the verdict timeout (so the deadline, not the NEs, answered them);
- missing and duplicate responses over the whole run, which must be 0;
- with --concat (30 % of messages in three parts, spread over the SMSC binds):
  whole messages decided and the CPU per whole message, and the long messages
  whose parts got different answers, which must be 0 unless --no-hold made
  SMPS judge each part alone;
- SMPS's RSS, sampled every `rss_every` seconds over the interval: its growth.

`--rate N%` makes a max run first and then one at that share of its msg/s;
`--nes`/`--workers` lists run one point after another. `--baseline` follows each
SMPS run with one of the bare relay (bench/bare_relay.py) in SMPS's place, same
scenario, and reports the ratio of their CPU per message: the yardstick. `--inflight N` is a
different run: N originals sent to NEs that never answer, with a verdict
timeout long enough that all are held, and SMPS's RSS before and after,
÷ N: the memory one original in flight costs.

The command lives in the source checkout, not in the installed package:
smps/cli.py finds this package beside the smps package and registers it. The
modules, by job: `scenario` (what a run does, SMPS's configuration),
`processes` (SMPS's processes from /proc; the generator processes), `driver`
(one run, start to stop), `report` (figures, JSON and text), `command` (the
options and the points they ask for).
"""

"""Run every atheris target for a share of a time budget; fail on any finding.

``python -m fuzz.run --seconds 600`` (what ``make fuzz-atheris`` runs, after
``make fuzz-build``) gives codec, text, session and screen 25 %, 15 %, 45 % and
15 % of the budget, one after the other, each a single libFuzzer process (the machine is
shared), against the instrumented build fuzz/engine.py picks. Corpora grow
in test-artifacts/fuzz/corpus/TARGET (seeded from fuzz/seeds.py when empty);
an input that fails is saved as test-artifacts/fuzz/TARGET-crash-* (or
-timeout-*, -oom-*), the full output in test-artifacts/fuzz/TARGET.log. Replay
one with ``python -m fuzz.TARGET FILE``.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz.engine import REPO
from fuzz.seeds import SEEDS

SHARES = {"codec": 0.25, "text": 0.15, "session": 0.45, "screen": 0.15}
STATUS_LINE = re.compile(r"^#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+)")
EXEC_PER_SEC = re.compile(r"^stat::average_exec_per_sec:\s+(\d+)")


def run_target(target: str, seconds: int, out: Path) -> dict:
    corpus = out / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for name, data in SEEDS[target]().items():
            (corpus / f"seed-{name}").write_bytes(data)
    log = out / f"{target}.log"
    command = [
        sys.executable,
        "-m",
        f"fuzz.{target}",
        f"-max_total_time={seconds}",
        "-timeout=10",  # one input taking longer is a hang
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={out}/{target}-",
        str(corpus),
    ]
    earlier = set(out.glob(f"{target}-*"))
    started = time.monotonic()
    with log.open("w") as output:
        result = subprocess.run(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
    report = {
        "target": target,
        "seconds": round(time.monotonic() - started),
        "exit": result.returncode,
    }
    for line in log.read_text(errors="replace").splitlines():
        if match := STATUS_LINE.match(line):
            report["runs"], report["cov"], report["ft"] = map(int, match.groups())
        elif match := EXEC_PER_SEC.match(line):
            report["exec/s"] = int(match.group(1))
    report["findings"] = sorted(p.name for p in set(out.glob(f"{target}-*")) - earlier)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="total budget (default 600)")
    parser.add_argument("--targets", default=",".join(SHARES), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "fuzz")
    args = parser.parse_args(argv)
    targets = args.targets.split(",")
    unknown = set(targets) - set(SHARES)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(SHARES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    total_share = sum(SHARES[t] for t in targets)
    failed = False
    for target in targets:
        seconds = max(1, round(args.seconds * SHARES[target] / total_share))
        print(f"fuzz.{target}: {seconds} s ...", flush=True)
        report = run_target(target, seconds, args.out)
        r = {"runs": "?", "exec/s": "?", "cov": "?", "ft": "?", **report}
        print(
            f"  {target}: {r['seconds']} s, {r['runs']} runs, {r['exec/s']} exec/s, "
            f"cov {r['cov']}, ft {r['ft']}, exit {r['exit']}",
            flush=True,
        )
        if report["exit"] != 0 or report["findings"]:
            failed = True
            print(f"  FAILED: {report['findings'] or 'see the log'}; log: {args.out}/{target}.log")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m smps.runtime -c FILE`: the master and its workers (what `smps run` runs)."""

import argparse
import sys

from smps import config as config_module
from smps import log as smps_log
from smps.errors import ConfigError, StateDirBusy
from smps.ha.lease import check_config
from smps.runtime import state_lock
from smps.runtime.master import run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m smps.runtime")
    config_module.add_config_option(parser)
    args = parser.parse_args()
    try:
        cfg = config_module.load(args.config)
        check_config(cfg)
        lock = state_lock.hold(cfg.node.state_dir)  # as `smps run`: before the log and the rest
    except (ConfigError, StateDirBusy) as exc:
        print(f"smps: {exc}", file=sys.stderr)
        return 2
    with lock:
        smps_log.configure_from(cfg.log)
        return run(cfg, args.config)


if __name__ == "__main__":
    sys.exit(main())

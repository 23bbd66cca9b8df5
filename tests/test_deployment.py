"""What the deployment files under config/ promise: the standalone systemd unit passes
`systemd-analyze verify`, the Prometheus alerting rules pass `promtool check rules`
(each where the tool is installed: `.ci/run` installs Debian's prometheus), and the
Grafana dashboard asks only for metrics SMPS exports."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smps.runtime.metrics import FAMILIES

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
SMPS = Path(sys.executable).parent / "smps"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_systemd_unit_verifies(tmp_path):
    """The unit as shipped, its ExecStart pointed at this checkout's smps (verify checks
    that the command exists and is executable)."""
    unit = (CONFIG / "systemd" / "smps.service").read_text()
    assert "/opt/smps/.venv/bin/smps run" in unit
    promised = (
        "WorkingDirectory=",
        "StateDirectory=",
        "LogsDirectory=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    )
    for key in promised:
        assert key in unit, key
    here = tmp_path / "smps.service"
    here.write_text(unit.replace("/opt/smps/.venv/bin/smps", str(SMPS)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(here)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="needs promtool (apt-get install prometheus)"
)
def test_alert_rules_pass_promtool():
    result = subprocess.run(
        ["promtool", "check", "rules", str(CONFIG / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


EXPORTED = {
    *(f"smps_{name}" for name in FAMILIES),
    "smps_binds_up",
    "smps_in_flight",
    "smps_worker_restarts",
    "smps_workers_up",
    "smps_ha_role",
    "smps_ha_transitions",
    "smps_db_records_pending",
    "smps_db_records_spooled",
    "smps_db_records_dropped",
    "smps_db_records_written",
    "smps_db_spool_bytes",
    "smps_db_writer_failing",
}


def _metric_names(expression: str) -> set[str]:
    names = set(re.findall(r"\bsmps_\w+", expression))
    return {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in names}


def test_dashboard_and_alerts_ask_only_for_exported_metrics():
    dashboard = json.loads((CONFIG / "grafana" / "smps-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions.append((CONFIG / "prometheus" / "alerts.yml").read_text())
    asked = set().union(*map(_metric_names, expressions))
    assert asked <= EXPORTED, asked - EXPORTED
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Decision latency (p50, p99)", "Database writer", "Screening hits"} <= titles

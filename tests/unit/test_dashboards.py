"""The committed Grafana dashboards are what scripts/dashboards.py generates, and every panel
queries Prometheus the way the Helm charts' monitors label the series (job + namespace)."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import REPO

DASHBOARDS = REPO / "charts" / "devicefleet-monitoring" / "dashboards"
UIDS = ["devicefleet-fleets", "devicefleet-pipeline", "devicefleet-slo"]
JOBS = {
    f"devicefleet-{s}" for s in ("ingest", "bridge", "processor", "sink", "operator", "simulator")
}


def generator() -> ModuleType:
    name = "devicefleet_scripts_dashboards"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts/dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load(uid: str) -> dict[str, Any]:
    return dict(json.loads((DASHBOARDS / f"{uid}.json").read_text()))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            out += panel.get("panels", [])
        else:
            out.append(panel)
    return out


def test_generator_is_deterministic() -> None:
    module = generator()
    assert module.render() == module.render()
    assert sorted(module.render()) == [f"{uid}.json" for uid in UIDS]


@pytest.mark.parametrize("uid", UIDS)
def test_variables(uid: str) -> None:
    board = load(uid)
    assert board["uid"] == uid
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["type"] == "query"
    assert namespace["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert namespace["query"] == 'label_values(up{job=~"devicefleet-.*"}, namespace)'


@pytest.mark.parametrize("uid", UIDS)
def test_every_panel_queries_by_namespace_and_job(uid: str) -> None:
    board = load(uid)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    problems = []
    for panel in panels(board):
        where = f"{uid} / {panel['title']}"
        if panel.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            problems.append(f"{where}: datasource {panel.get('datasource')}")
        if not panel.get("targets"):
            problems.append(f"{where}: no targets")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit") and panel[
            "type"
        ] not in ("state-timeline", "table"):
            problems.append(f"{where}: no unit")
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            if 'namespace=~"$namespace"' not in expr:
                problems.append(f"{where}: {expr!r} does not filter by namespace")
            if "rate(" in expr and "[$__rate_interval]" not in expr:
                problems.append(f"{where}: {expr!r} rate() without $__rate_interval")
            # Service metrics are selected by the job the charts' monitors set; recording
            # rules (slo:*) and ALERTS carry the labels of the rules instead.
            jobs = set(re.findall(r'job=~?"([^"]+)"', expr))
            if not jobs and not re.search(r"\b(slo:|ALERTS\b)", expr):
                problems.append(f"{where}: {expr!r} does not select a job")
            for job in jobs:
                if not {j for j in JOBS if re.fullmatch(job, j)}:
                    problems.append(f"{where}: job {job!r} matches no DeviceFleet service")
    assert not problems, "\n".join(problems)


def test_incident_only_panels_are_only_alerts() -> None:
    module = generator()
    marked = [
        (uid, p["title"])
        for uid in UIDS
        for p in panels(load(uid))
        if p.get("description", "").startswith(module.INCIDENT_ONLY)
    ]
    assert marked == [("devicefleet-slo", "Firing alerts")]


def test_dashboards_dir_holds_only_generated_files() -> None:
    assert sorted(p.name for p in Path(DASHBOARDS).iterdir()) == [f"{u}.json" for u in UIDS]

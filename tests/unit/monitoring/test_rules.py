"""Alerting and SLO rules of charts/devicefleet-monitoring: promtool validates them and runs
their unit tests (devicefleet_rules_test.yaml: every alert fires, stays quiet on healthy
traffic and resolves); structural checks keep the rules, those tests and docs/runbooks.md
in step."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

RULES_DIR = REPO / "charts" / "devicefleet-monitoring" / "rules"
ALERTS_FILE = RULES_DIR / "devicefleet-alerts.yaml"
SLO_FILE = RULES_DIR / "devicefleet-slo.yaml"
RULE_FILES = (ALERTS_FILE, SLO_FILE)
TEST_FILE = Path(__file__).with_name("devicefleet_rules_test.yaml")
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/devicefleet/devicefleet/blob/main/docs/runbooks.md#"
SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = ("summary", "description", "runbook_url")
SLOS = {"ingest-availability", "ingest-latency", "pipeline-errors"}
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# The chart embeds the rule files verbatim (no tpl): the only {{ }} allowed are Prometheus'
# own alert templates, e.g. {{ $labels.pod }} or {{ $value | humanizePercentage }}.
PROMETHEUS_TEMPLATE = re.compile(r"\{\{ \$(labels\.[a-z_]+|value)( \| [A-Za-z]+)? \}\}")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, (
        "promtool not found on PATH: it comes with Debian's `prometheus` package, which "
        "`make stack-up` installs (devstack/components/prometheus.sh); or run "
        "`apt-get install --no-install-recommends prometheus`"
    )
    return path


def run_promtool(*args: str) -> None:
    result = subprocess.run(
        [promtool(), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    )


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in load(path)["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for rule in rules(path) if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_rule_files_pass_promtool_check() -> None:
    run_promtool("check", "rules", "--lint=all", "--lint-fatal", *map(str, RULE_FILES))


def test_promtool_unit_tests_pass() -> None:
    run_promtool("test", "rules", str(TEST_FILE))


def test_unit_tests_load_every_rule_file() -> None:
    loaded = {(TEST_FILE.parent / f).resolve() for f in load(TEST_FILE)["rule_files"]}
    assert loaded == {p.resolve() for p in RULES_DIR.glob("*.yaml")}
    assert set(RULE_FILES) <= loaded


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_alert_has_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    for key in ANNOTATIONS:
        assert rule.get("annotations", {}).get(key, "").strip(), f"{rule['alert']}: no {key}"
    assert rule["annotations"]["runbook_url"] == RUNBOOK_BASE + rule["alert"].lower()


def runbook_anchors() -> set[str]:
    anchors: set[str] = set()
    fenced = False
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            anchors.add(github_anchor(line.lstrip("#")))
    return anchors


def test_runbook_urls_point_at_runbook_headings() -> None:
    headings = runbook_anchors()
    missing = {
        rule["alert"]
        for rule in alerts()
        if rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE) not in headings
    }
    assert not missing, f"no heading in docs/runbooks.md for {sorted(missing)}"


def test_every_alert_fires_and_resolves_in_the_unit_tests() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in load(TEST_FILE)["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet or resolved"
    assert (fires | quiet) - names == set(), "tests of alerts that do not exist"


def test_expected_alerts_check_labels_and_annotations() -> None:
    by_name = {rule["alert"]: rule for rule in alerts()}
    for group in load(TEST_FILE)["tests"]:
        for case in group.get("alert_rule_test", []):
            rule = by_name[case["alertname"]]
            for alert in case.get("exp_alerts") or []:
                labels = alert.get("exp_labels", {})
                assert labels.get("severity") == rule["labels"]["severity"], case
                assert "namespace" in labels, case
                assert set(alert.get("exp_annotations", {})) == set(ANNOTATIONS), case


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_files_hold_no_helm_templates(path: Path) -> None:
    text = path.read_text()
    foreign = [m for m in re.findall(r"\{\{.*?\}\}", text) if not PROMETHEUS_TEMPLATE.fullmatch(m)]
    assert not foreign, f"{path.name}: Helm would not render these, Prometheus would choke"
    assert "{{-" not in text
    assert "-}}" not in text


def test_slo_recording_rules_cover_every_slo_and_window() -> None:
    records = [rule for rule in rules(SLO_FILE) if "record" in rule]
    ratios = {
        (rule["labels"]["slo"], rule["record"].removeprefix("slo:sli_error:ratio_rate"))
        for rule in records
        if rule["record"].startswith("slo:sli_error:ratio_rate")
    }
    assert ratios == {(slo, window) for slo in SLOS for window in WINDOWS}
    objectives = {
        rule["labels"]["slo"]: float(rule["expr"].removeprefix("vector(").removesuffix(")"))
        for rule in records
        if rule["record"] == "slo:objective:ratio"
    }
    assert objectives == {
        "ingest-availability": 0.999,
        "ingest-latency": 0.95,
        "pipeline-errors": 0.999,
    }
    assert [rule["expr"] for rule in records if rule["record"] == "slo:error_budget:ratio"] == [
        "1 - slo:objective:ratio"
    ]


def test_generic_metric_names_are_selected_by_job() -> None:
    """http_requests_total, up, circuit_breaker_state and kafka_consumer_lag_messages exist in
    other applications too: every selector of them names a devicefleet job."""
    generic = ("http_request", "up", "circuit_breaker_state", "kafka_consumer_lag_messages")
    for path in RULE_FILES:
        for rule in rules(path):
            for metric, matchers in re.findall(r"\b([a-z_:]+)\{([^}]*)\}", rule["expr"]):
                if metric.startswith(generic):
                    assert re.search(r'job=~?"devicefleet-', matchers), (rule, metric)

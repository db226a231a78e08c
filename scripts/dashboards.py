"""Generate DeviceFleet's Grafana dashboards (charts/devicefleet-monitoring/dashboards/*.json).

uv run python scripts/dashboards.py          # rewrite the files
uv run python scripts/dashboards.py --check  # exit 1 if they are out of date (CI)

Built with grafana-foundation-sdk (Grafana 11.6 schema). Every query selects its service by
``job`` (what the ServiceMonitors/PodMonitors of the Helm charts set from
``app.kubernetes.io/name``: devicefleet-ingest, -bridge, -processor, -sink, -operator,
-simulator) and filters by ``namespace=~"$namespace"``. The integration test
tests/integration/monitoring/test_dashboards_live.py runs every query against a live Prometheus
and requires data, except for panels whose description starts with ``INCIDENT_ONLY``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

TARGET_DIR = (
    Path(__file__).resolve().parents[1] / "charts" / "devicefleet-monitoring" / "dashboards"
)
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
NAMESPACE = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
# A panel whose description starts with this only has series during an incident (firing
# alerts); the live test skips its data check and asserts that this set stays small.
INCIDENT_ONLY = "[incident-only]"
TAGS = ["devicefleet"]

# SLOs of the Prometheus rules (charts/devicefleet-monitoring/rules): recording rules
# slo:sli_error:ratio_rate<window>{slo, namespace}, slo:objective:ratio{slo},
# slo:error_budget:ratio{slo}.
SLOS = [
    ("ingest-availability", "Ingest availability", "share of /ingest requests not answered 5xx"),
    ("ingest-latency", "Ingest latency", "share of /ingest requests answered within 0.5 s"),
    ("pipeline-errors", "Pipeline errors", "share of messages ingest and the bridge hand to Kafka"),
]
SLI_WINDOWS = ["5m", "1h", "1d"]
BURN_WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]


def sel(job: str, *matchers: str) -> str:
    """Label selector of one DeviceFleet service in the selected namespaces."""
    return "{" + ",".join([f'job="devicefleet-{job}"', NAMESPACE, *matchers]) + "}"


def rate(metric: str, job: str, *matchers: str) -> str:
    return f"rate({metric}{sel(job, *matchers)}[{RATE}])"


def sum_rate(by: str, metric: str, job: str, *matchers: str) -> str:
    """Per-second rate of a counter summed by ``by`` (comma-separated labels, or "")."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({rate(metric, job, *matchers)})"


def quantile(q: float, metric: str, job: str, by: str = "", *matchers: str) -> str:
    labels = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, {sum_rate(labels, metric + '_bucket', job, *matchers)})"


@dataclass(frozen=True)
class Q:
    """One panel target: a PromQL expression and its legend."""

    expr: str
    legend: str = "__auto"


def _targets(queries: Sequence[Q], instant: bool = False) -> list[prometheus.Dataquery]:
    out = []
    for i, q in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .ref_id(chr(ord("A") + i))
            .expr(q.expr)
            .legend_format(q.legend)
        )
        if instant:
            target = target.instant().format(PromQueryFormat.TABLE)
        out.append(target)
    return out


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def graph(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q],
    width: int = 8,
    height: int = 8,
    stacked: bool = False,
    minimum: float | None = 0,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(width)
        .height(height)
        .fill_opacity(10)
        .legend(
            VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(
            VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if stacked:
        panel = panel.stacking(StackingConfig().mode(common.StackingMode.NORMAL))
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Q],
    thresholds: dash.ThresholdsConfig,
    width: int = 4,
    height: int = 8,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(thresholds)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


class Board:
    """A dashboard under construction; panel ids are assigned in order (stable)."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.uid = uid
        self._next_id = 0
        self.builder = (
            dash.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .editable()
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .time("now-3h", "now")
            .refresh("30s")
            .timezone("browser")
            .with_variable(
                dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
            )
            .with_variable(
                dash.QueryVariable("namespace")
                .label("Namespace")
                .datasource(DATASOURCE)
                .query('label_values(up{job=~"devicefleet-.*"}, namespace)')
                .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(model.VariableSort.ALPHABETICAL_ASC)
                .multi(True)
                .include_all(True)
            )
        )

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def row(self, title: str) -> Board:
        self.builder = self.builder.with_row(dash.Row(title).id(self._id()))
        return self

    def add(self, *panels: Any) -> Board:
        for panel in panels:
            self.builder = self.builder.with_panel(panel.id(self._id()))
        return self

    def json(self) -> str:
        return json.dumps(self.builder.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def pipeline() -> Board:
    b = Board(
        "devicefleet-pipeline",
        "DeviceFleet / Pipeline",
        "Telemetry pipeline: HTTP ingest and MQTT bridge into Kafka, processor, sink into "
        "PostgreSQL.",
    )
    ingest_routes = 'route=~"/ingest|/ingest/batch"'
    b.row("Ingest (HTTP)")
    b.add(
        graph(
            "Ingest messages by outcome",
            "Messages received by ingest (a request with a batch counts each message) and what "
            "became of them: accepted (acknowledged after Kafka's ack), duplicate (409), "
            "rejected (400/413), overloaded (503), failed.",
            "mps",
            [
                Q(sum_rate("outcome", "ingest_messages_total", "ingest"), "{{outcome}}"),
                Q(sum_rate("", "ingest_messages_received_total", "ingest"), "received"),
            ],
        ),
        graph(
            "HTTP requests by status",
            "Requests to /ingest and /ingest/batch per second by route and status code.",
            "reqps",
            [
                Q(
                    sum_rate("route, status", "http_requests_total", "ingest", ingest_routes),
                    "{{route}} {{status}}",
                )
            ],
        ),
        graph(
            "Ingest latency",
            "p50/p95/p99 of /ingest and /ingest/batch request duration (the ingest-latency SLO "
            "counts requests under 0.5 s).",
            "s",
            [
                Q(
                    quantile(q, "http_request_duration_seconds", "ingest", "", ingest_routes),
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
        ),
    )
    b.add(
        graph(
            "Kafka produce latency",
            "p95 time from produce to the broker's acknowledgement (ingest and bridge).",
            "s",
            [
                Q(quantile(0.95, "kafka_produce_duration_seconds", "ingest"), "ingest p95"),
                Q(quantile(0.95, "bridge_produce_duration_seconds", "bridge"), "bridge p95"),
            ],
            width=12,
        ),
        graph(
            "Ingest messages in flight",
            "Messages produced to Kafka and not yet acknowledged, per pod.",
            "short",
            [Q(f"sum by (pod) (ingest_in_flight_messages{sel('ingest')})", "{{pod}}")],
            width=12,
        ),
    )
    b.row("MQTT bridge")
    b.add(
        graph(
            "Bridge messages forwarded / failed",
            "MQTT messages forwarded to Kafka (PUBACK after the Kafka ack) or failed.",
            "mps",
            [Q(sum_rate("outcome", "bridge_messages_total", "bridge"), "{{outcome}}")],
        ),
        graph(
            "MQTT connection",
            "1 while the bridge pod is connected to the MQTT broker.",
            "short",
            [Q(f"min by (pod) (bridge_mqtt_connected{sel('bridge')})", "{{pod}}")],
        ),
        graph(
            "Bridge unacknowledged messages",
            "MQTT messages received and not yet acknowledged to the broker, per pod.",
            "short",
            [Q(f"sum by (pod) (bridge_unacked_messages{sel('bridge')})", "{{pod}}")],
        ),
    )
    b.row("Processor")
    b.add(
        graph(
            "Processor decoded vs dead-lettered",
            "Raw records decoded and enriched, or sent to the dead-letter topic.",
            "mps",
            [
                Q(
                    sum_rate("outcome", "processor_messages_total", "processor"),
                    "{{outcome}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Dead letters by reason",
            "Records dead-lettered by the processor, by the dlq-reason header.",
            "mps",
            [
                Q(
                    sum_rate("reason", "processor_dead_letters_total", "processor"),
                    "{{reason}}",
                )
            ],
            stacked=True,
        ),
        graph(
            "Processor latency",
            "p95 decode + enrich time per record and consume-to-commit time per batch.",
            "s",
            [
                Q(quantile(0.95, "processor_decode_duration_seconds", "processor"), "decode p95"),
                Q(quantile(0.95, "processor_batch_duration_seconds", "processor"), "batch p95"),
            ],
        ),
    )
    b.add(
        graph(
            "Device registry",
            "Devices in the processor's registry cache, per pod.",
            "short",
            [Q(f"max by (pod) (processor_registry_devices{sel('processor')})", "{{pod}}")],
            width=12,
        ),
        graph(
            "Registry queries",
            "PostgreSQL queries of the device registry by operation and outcome.",
            "ops",
            [
                Q(
                    sum_rate("operation, outcome", "db_queries_total", "processor"),
                    "{{operation}} {{outcome}}",
                )
            ],
            width=12,
        ),
    )
    b.row("Sink")
    b.add(
        graph(
            "Sink rows inserted / duplicate",
            "Measurement rows inserted, or skipped by the unique key (message_id, metric, time): "
            "a replay or a duplicate message.",
            "rowsps",
            [Q(sum_rate("outcome", "sink_rows_total", "sink"), "{{outcome}}")],
            stacked=True,
        ),
        graph(
            "Sink records by outcome",
            "Decoded records consumed: written, or dead-lettered by the sink.",
            "recps",
            [Q(sum_rate("outcome", "sink_records_total", "sink"), "{{outcome}}")],
        ),
        graph(
            "Sink write failures",
            "Batch writes that failed and were retried.",
            "ops",
            [Q(sum_rate("pod", "sink_write_failures_total", "sink"), "{{pod}}")],
        ),
    )
    b.add(
        graph(
            "Sink batch latency",
            "p50/p95 write + commit time per batch.",
            "s",
            [
                Q(quantile(q, "sink_batch_duration_seconds", "sink"), f"p{round(q * 100)}")
                for q in (0.5, 0.95)
            ],
            width=12,
        ),
        graph(
            "Sink batch size",
            "p50/p95 records per batch.",
            "short",
            [
                Q(quantile(q, "sink_batch_size_records", "sink"), f"p{round(q * 100)}")
                for q in (0.5, 0.95)
            ],
            width=12,
        ),
    )
    b.row("Kafka")
    b.add(
        graph(
            "Consumer lag by topic",
            "Messages between each consumer group's position and the partitions' high "
            "watermarks: processor on the raw topic, sink on the decoded topic.",
            "short",
            [
                Q(
                    "sum by (job, topic) (kafka_consumer_lag_messages{"
                    f'job=~"devicefleet-processor|devicefleet-sink",{NAMESPACE}}})',
                    "{{job}} {{topic}}",
                )
            ],
            width=24,
        ),
    )
    return b


def fleets() -> Board:
    b = Board(
        "devicefleet-fleets",
        "DeviceFleet / Fleets and circuit breakers",
        "Simulated device fleets: circuit breakers, buffering, retries, publish latency, and the "
        "operator that runs the fleets.",
    )
    state = f"circuit_breaker_state{sel('simulator')}"
    b.row("Circuit breakers")
    b.add(
        single(
            "Breakers by state",
            "Simulator circuit breakers (one per pod and transport) closed, half-open, open.",
            "short",
            [
                Q(f"sum({state} == bool 0)", "closed"),
                Q(f"sum({state} == bool 1)", "half-open"),
                Q(f"sum({state} == bool 2)", "open"),
            ],
            _thresholds((None, "blue")),
            width=6,
        ),
        graph(
            "Open breakers by pod",
            "1 while a pod's breaker is open: its readings wait in the buffer.",
            "short",
            [Q(f"sum by (pod) ({state} == bool 2)", "{{pod}}")],
            width=9,
        ),
        statetimeline.Panel()
        .title("Breaker state by pod")
        .description("State of every pod's breaker over time.")
        .datasource(DATASOURCE)
        .targets(_targets([Q(f"max by (pod, breaker) ({state})", "{{pod}} {{breaker}}")]))
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="closed", color="green", index=0),
                        "1": model.ValueMappingResult(text="half-open", color="yellow", index=1),
                        "2": model.ValueMappingResult(text="open", color="red", index=2),
                    }
                )
            ]
        )
        .span(9)
        .height(8),
    )
    b.add(
        graph(
            "Breaker transitions",
            "State changes of the simulators' breakers.",
            "short",
            [
                Q(
                    "sum by (from_state, to_state) (increase(circuit_breaker_transitions_total"
                    f"{sel('simulator')}[{RATE}]))",
                    "{{from_state}} → {{to_state}}",
                )
            ],
            width=12,
        ),
        graph(
            "Breaker failures",
            "Failed calls counted by the breakers, per pod.",
            "ops",
            [Q(sum_rate("pod", "circuit_breaker_failures_total", "simulator"), "{{pod}}")],
            width=12,
        ),
    )
    b.row("Simulators")
    b.add(
        graph(
            "Simulator messages by outcome",
            "generated, acknowledged, duplicate_acknowledged, rejected, dropped, duplicated, "
            "malformed, buffered, buffer_overflow.",
            "mps",
            [
                Q(
                    sum_rate("outcome", "simulator_messages_total", "simulator"),
                    "{{outcome}}",
                )
            ],
        ),
        graph(
            "Buffered messages",
            "Messages waiting in the pods' ordered buffers (breaker open).",
            "short",
            [Q(f"sum by (pod) (simulator_buffered_messages{sel('simulator')})", "{{pod}}")],
        ),
        graph(
            "Retries by transport",
            "Attempts made after a transient failure (429/503/timeouts/connection errors).",
            "ops",
            [Q(sum_rate("transport", "retry_attempts_total", "simulator"), "{{transport}}")],
        ),
    )
    b.add(
        graph(
            "Publish latency by transport",
            "p95 of one publish attempt, until PUBACK or the HTTP response.",
            "s",
            [
                Q(
                    quantile(0.95, "simulator_publish_duration_seconds", "simulator", "transport"),
                    "{{transport}} p95",
                )
            ],
            width=12,
        ),
        graph(
            "Devices simulated",
            "Devices simulated, per pod.",
            "short",
            [Q(f"sum by (pod) (simulator_devices{sel('simulator')})", "{{pod}}")],
            width=12,
            stacked=True,
        ),
    )
    b.row("Operator")
    b.add(
        graph(
            "Fleets by phase",
            "DeviceFleets known to the operator, by status phase.",
            "short",
            [Q(f"max by (phase) (devicefleet_operator_fleets{sel('operator')})", "{{phase}}")],
            width=6,
        ),
        graph(
            "Reconciles by outcome",
            "Reconciliations of fleets' Service and StatefulSet: changed, unchanged, invalid, "
            "error.",
            "ops",
            [
                Q(
                    sum_rate("outcome", "devicefleet_operator_reconcile_total", "operator"),
                    "{{outcome}}",
                )
            ],
            width=6,
        ),
        graph(
            "Operator latency",
            "p95 time to reconcile one fleet and to read one fleet's pods' /status.",
            "s",
            [
                Q(
                    quantile(0.95, "devicefleet_operator_reconcile_duration_seconds", "operator"),
                    "reconcile p95",
                ),
                Q(
                    quantile(0.95, "devicefleet_operator_status_poll_duration_seconds", "operator"),
                    "status poll p95",
                ),
            ],
            width=6,
        ),
        graph(
            "Pod status poll errors",
            "Pod /status reads that failed (pod not serving yet, or unreachable).",
            "ops",
            [
                Q(
                    sum_rate("pod", "devicefleet_operator_pod_status_errors_total", "operator"),
                    "{{pod}}",
                )
            ],
            width=6,
        ),
    )
    b.row("Predictive health")
    b.add(
        graph(
            "Machines by predicted state",
            "Trucks whose newest health prediction (younger than 5 minutes) is in each state, "
            "per fleet. MachineDegrading fires on degrading or critical.",
            "short",
            [
                Q(
                    f"sum by (fleet, state) (ml_devices_predicted{sel('processor')})",
                    "{{fleet}} {{state}}",
                )
            ],
            width=8,
            stacked=True,
        ),
        graph(
            "Predictions",
            "Health predictions per second, by predicted state and by who computed the "
            "features (edge gateway or processor).",
            "ops",
            [
                Q(
                    sum_rate("state, source", "ml_predictions_total", "processor"),
                    "{{state}} ({{source}})",
                )
            ],
            width=8,
        ),
        graph(
            "Inference latency",
            "Model inference time per prediction (features excluded).",
            "s",
            [
                Q(quantile(q, "ml_prediction_duration_seconds", "processor"), f"p{int(q * 100)}")
                for q in (0.5, 0.95, 0.99)
            ],
            width=8,
        ),
        single(
            "Live accuracy",
            "Share of correct predictions among the last 1,000 that carried the simulator's "
            "ground truth. Only fleets with groundTruth: true report it; empty otherwise.",
            "percentunit",
            [
                Q(
                    f"min by (model_version) (ml_prediction_accuracy{sel('processor')})",
                    "{{model_version}}",
                )
            ],
            _thresholds((None, "red"), (0.9, "orange"), (0.97, "green")),
            width=6,
        ),
        graph(
            "Edge features refused",
            "Feature vectors from edge gateways the processor refused (it computed its own "
            "instead), by reason. Non-zero: the edge and the processor disagree on the feature "
            "set.",
            "ops",
            [Q(sum_rate("reason", "ml_edge_features_rejected_total", "processor"), "{{reason}}")],
            width=6,
        ),
        graph(
            "Prediction errors",
            "Readings stored without a prediction because scoring failed.",
            "ops",
            [Q(f"sum (rate(ml_prediction_errors_total{sel('processor')}[{RATE}]))", "errors")],
            width=12,
        ),
    )
    return b


def slo() -> Board:
    b = Board(
        "devicefleet-slo",
        "DeviceFleet / SLOs",
        "Service level objectives: SLIs, burn rates per alerting window and error budget, from "
        "the slo:* recording rules of the devicefleet-monitoring chart.",
    )
    b.row("Alerts")
    b.add(
        table.Panel()
        .title("Firing alerts")
        .description(
            f"{INCIDENT_ONLY} DeviceFleet alerts firing now in the selected namespaces (empty "
            "while all is well)."
        )
        .datasource(DATASOURCE)
        .targets(
            _targets(
                [
                    Q(
                        "sum by (alertname, severity, slo, pod) "
                        f'(ALERTS{{alertstate="firing",{NAMESPACE}}})',
                        "{{alertname}}",
                    )
                ],
                instant=True,
            )
        )
        .span(24)
        .height(6)
    )
    for name, title, what in SLOS:
        sli = f'slo="{name}",{NAMESPACE}'
        budget = f'on (slo) group_left () slo:error_budget:ratio{{slo="{name}"}}'
        b.row(f"SLO {title}")
        b.add(
            graph(
                f"{title}: SLI",
                f"SLI ({what}) over 5 m, 1 h and 1 d, against the objective.",
                "percentunit",
                [
                    *(
                        Q(f"1 - slo:sli_error:ratio_rate{w}{{{sli}}}", f"{{{{namespace}}}} {w}")
                        for w in SLI_WINDOWS
                    ),
                    Q(
                        f'slo:objective:ratio{{slo="{name}"}} and on (slo) '
                        f"slo:sli_error:ratio_rate5m{{{sli}}}",
                        "objective",
                    ),
                ],
                width=10,
                minimum=None,
            ),
            graph(
                f"{title}: burn rate",
                "Error ratio divided by the error budget (1 - objective), per alerting window: 1 "
                "spends the budget exactly over the SLO period; 14.4 (1 h and 5 m) and 6 (6 h and "
                "30 m) page.",
                "short",
                [
                    Q(f"slo:sli_error:ratio_rate{w}{{{sli}}} / {budget}", f"{{{{namespace}}}} {w}")
                    for w in BURN_WINDOWS
                ],
                width=10,
            ),
            single(
                f"{title}: error budget left",
                "Estimate: the share of the error budget left if the error ratio of the last 3 "
                "days held for the whole SLO period (1 - 3 d burn rate).",
                "percentunit",
                [Q(f"1 - slo:sli_error:ratio_rate3d{{{sli}}} / {budget}", "{{namespace}}")],
                _thresholds((None, "red"), (0, "orange"), (0.25, "yellow"), (0.5, "green")),
                width=4,
            ),
        )
    return b


def render() -> dict[str, str]:
    """File name → JSON of every dashboard."""
    return {f"{b.uid}.json": b.json() for b in (pipeline(), fleets(), slo())}


def main() -> int:
    files = render()
    if "--check" in sys.argv:
        stale = sorted(
            name
            for name in {p.name for p in TARGET_DIR.glob("*.json")} | set(files)
            if not (TARGET_DIR / name).exists()
            or name not in files
            or (TARGET_DIR / name).read_text() != files[name]
        )
        if stale:
            print(
                f"{TARGET_DIR} is out of date ({', '.join(stale)}): "
                "run uv run python scripts/dashboards.py"
            )
            return 1
        return 0
    TARGET_DIR.mkdir(parents=True, exist_ok=True)
    for path in TARGET_DIR.glob("*.json"):
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        (TARGET_DIR / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writes what the chaos suite measured into docs/reliability.md, between markers, so the
table in the docs is always the one the last full run produced."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.support import REPO

if TYPE_CHECKING:
    from tests.integration.chaos.harness import ScenarioResult

DOC = REPO / "docs" / "reliability.md"


def _replace_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOC.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    assert pattern.search(text), f"{DOC} lacks the {start} ... {end} markers"
    DOC.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text), encoding="utf-8")


def write_chaos_table(results: list[ScenarioResult]) -> None:
    lines = [
        f"Produced by `pytest -m chaos` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| scenario | fault | acknowledged | stored | lost | duplicated | raw records "
        "(distinct) | decoded | dead-lettered | ingest received = outcomes | breakers "
        "opened | verdict s |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|",
    ]
    for r in results:
        outcomes = " + ".join(f"{v} {k}" for k, v in sorted(r.ingest_outcomes.items()) if v)
        lines.append(
            f"| {r.scenario} | {r.fault} | {r.acknowledged} | {r.stored} | {r.lost} | "
            f"{r.duplicated} | {r.raw_records} ({r.raw_messages}) | {r.decoded_messages} | "
            f"{r.processor_dead_letters} | {r.ingest_received} = {outcomes or '0'} | "
            f"{r.breaker_opened}/4 | {r.seconds} |"
        )
    _replace_section("chaos-table", "\n".join(lines))
    (DOC.parent / "reliability" / "chaos.json").parent.mkdir(exist_ok=True)
    (DOC.parent / "reliability" / "chaos.json").write_text(
        json.dumps([r.as_json() for r in results], indent=2) + "\n", encoding="utf-8"
    )


def write_section(name: str, rows: list[dict[str, Any]], note: str) -> None:
    """A small table (one dict per row) into a named section of the same page."""
    columns = list(rows[0])
    lines = [
        note,
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows),
    ]
    _replace_section(name, "\n".join(lines))

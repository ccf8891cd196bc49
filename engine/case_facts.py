"""The dashboard's facts about a case, kept in plain `gf_case` columns.

Whatever a transition writes to a case (its `summary`, copied from the workflow
data, and its grid), an ORM hook derives here, in the same flush, the columns
the metrics aggregate: the time limit to close (`due_at`), where it was
resolved, the satisfaction rating, the outcome, and the grid's ancestors by
depth. The hook sits on the mapper, not in the service, so every writer (the
service, the timer worker, a bulk load through the ORM) keeps them right and
the metrics never read JSON or load a workflow.

A finished reverse evaluation (逆向考评) also copies its scores into
`evaluation_score`, one row per unit scored.

Every write also sets `rollup_dirty`: the dashboard roll-ups (engine/rollup.py)
take the case in again at their next refresh, and correct for it until then.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, event, insert, select

from .models import Case, EvaluationScore, JurisdictionNode

LEVEL_ORDER = ("grid", "town", "county", "city")
# days each level of the grid-matter chain gets, from the dispatch rules' outputs
LEVEL_DAYS = {"grid": "grid_days", "town": "town_days", "county": "county_days", "city": "city_days"}
DEPTH_COLUMNS = ("depth1_id", "depth2_id", "depth3_id", "depth4_id")

EVALUATION_PROCESS = "reverse_evaluation"
# (score field, node-id field, unit kind) in the reverse evaluation's data
EVALUATION_FIELDS = (
    ("community_score", "community_node_id", "community"),
    ("town_score", "town_node_id", "town"),
) + tuple((f"dept_{t}_score", f"dept_{t}_node_id", "department")
          for t in ("chengguan", "zhujian", "paichusuo", "sifasuo", "minzheng"))


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _text(value, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def time_limit(created_at: datetime, summary: dict) -> datetime | None:
    """When a case must be closed (办结时限), or None if its process sets no limit.

    A case whose data carries the dispatch rules' `deadline_days` (a grid matter) has
    that many days from registration, plus the limit of every higher level it was
    escalated to (a matter that went to the county had the town's and the county's
    days too). Processes without `deadline_days` have no case-level limit."""
    days = _number(summary.get("deadline_days"))
    if days is None or created_at is None:
        return None
    start = summary.get("handling_level")
    reached = summary.get("resolved_level") or summary.get("current_level")
    if start in LEVEL_ORDER and reached in LEVEL_ORDER:
        for level in LEVEL_ORDER[LEVEL_ORDER.index(start) + 1:LEVEL_ORDER.index(reached) + 1]:
            days += _number(summary.get(LEVEL_DAYS[level])) or 0
    return created_at + timedelta(days=days)


def depth_ids(grid_path: str) -> list[int | None]:
    ids = [int(p) for p in (grid_path or "").strip("/").split("/") if p]
    return [ids[i] if i < len(ids) else None for i in range(len(DEPTH_COLUMNS))]


def fill(case: Case) -> None:
    summary = case.summary or {}
    case.due_at = time_limit(case.created_at, summary)
    case.resolved_level = _text(summary.get("resolved_level"), 16)
    case.satisfaction = _text(summary.get("satisfaction"), 24)
    case.outcome = _text(summary.get("outcome"), 40)
    for column, node_id in zip(DEPTH_COLUMNS, depth_ids(case.grid_path)):
        setattr(case, column, node_id)
    # the dashboard roll-ups take this case in again at their next refresh (engine/rollup.py);
    # a flag on the case's own row, so no write ever waits on a shared counter
    case.rollup_dirty = True


@event.listens_for(Case, "before_insert")
@event.listens_for(Case, "before_update")
def _fill_facts(mapper, connection, case):
    fill(case)


def evaluation_rows(case: Case) -> list[dict]:
    summary = case.summary or {}
    period = summary.get("period")
    if not isinstance(period, str) or len(period) != 7:
        return []
    rows = []
    for score_field, node_field, kind in EVALUATION_FIELDS:
        score, node_id = summary.get(score_field), summary.get(node_field)
        if isinstance(score, bool) or not isinstance(score, int) or isinstance(node_id, bool) \
                or not isinstance(node_id, int):
            continue
        rows.append(dict(case_id=case.id, period=period, evaluator_id=case.created_by_id, unit_node_id=node_id,
                         unit_kind=kind, score=score, scored_at=case.closed_at or case.updated_at))
    return rows


@event.listens_for(Case, "after_insert")
@event.listens_for(Case, "after_update")
def _copy_scores(mapper, connection, case):
    if case.process_key != EVALUATION_PROCESS or case.status != "completed":
        return
    rows = evaluation_rows(case)
    connection.execute(delete(EvaluationScore).where(EvaluationScore.case_id == case.id))
    if rows:  # only units that exist: the ids came in as case data
        known = set(connection.scalars(select(JurisdictionNode.id).where(
            JurisdictionNode.id.in_({r["unit_node_id"] for r in rows}))))
        rows = [r for r in rows if r["unit_node_id"] in known]
    if rows:
        connection.execute(insert(EvaluationScore), rows)

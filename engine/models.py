"""SQL schema. Workflow state is SpiffWorkflow's serializer output (table
`case_state`); everything that is listed, filtered or counted lives in plain
columns so that no query ever has to deserialize a workflow.

Levels of the jurisdiction tree, top down: city > county > town > community > grid.
A functional department (城管, 司法所, 信访局 …) is a node of level `department`
whose parent is the town, county or city it belongs to.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import (
    JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, SmallInteger, String, Text,
    UniqueConstraint, text, true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .passwords import password_stamp

LEVELS = ("city", "county", "town", "community", "grid")
DEPARTMENT = "department"
# Functional departments (职能部门) by type; a lane may name one: `county.petition_officer:xinfangju`.
DEPT_TYPES = ("chengguan", "zhujian", "paichusuo", "sifasuo", "xinfangju", "fayuan", "minzheng", "lianxi")
# what officials call each department type and level (notes stored in English read in Chinese)
DEPT_NAMES_ZH = {"chengguan": "城管", "zhujian": "住建", "paichusuo": "派出所", "sifasuo": "司法所",
                 "xinfangju": "信访局", "fayuan": "人民法院", "minzheng": "民政", "lianxi": "联席办"}
LEVEL_NAMES_ZH = {"city": "市", "county": "县", "town": "乡镇", "community": "村（社区）", "grid": "网格"}
ROLES = (
    "grid_worker", "grid_leader", "center_dispatcher", "department_handler",
    "petition_officer", "leader", "mediator", "auditor", "designer", "admin",
)
# the roles whose holders work tasks: auditors only read; designers and administrators
# hold their roles for the workbench and the organisation, not for a lane
WORKING_ROLES = tuple(r for r in ROLES if r not in ("auditor", "designer", "admin"))
# what officials call each role (the web's English: web/i18n.py)
ROLE_NAMES_ZH = {
    "grid_worker": "网格员", "grid_leader": "网格长", "center_dispatcher": "派单员",
    "department_handler": "部门承办人", "petition_officer": "信访干部", "leader": "包案领导",
    "mediator": "调解员", "auditor": "督查", "designer": "流程设计员", "admin": "管理员",
}

# A case number's prefix (a county's key_prefix, a process's businessKeyPrefix): LX-2026-000123.
# Capitals, because case numbers are searched for in capitals; 8 at most (case_sequence.prefix).
BUSINESS_KEY_PREFIX = re.compile(r"[A-Z][A-Z0-9]{0,7}")

_ZERO = timedelta(0)

JsonType = JSON().with_variant(JSONB(), "postgresql")
# Portable autoincrementing big integer (SQLite only autoincrements INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL.

    A value in another zone (a China-time period bound) is converted to UTC before it is
    bound: SQLite keeps only the wall-clock digits, so without it 08:00+08:00 would be
    stored, and compared, as 08:00 UTC."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value if value.utcoffset() == _ZERO else value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def path_ids(path: str) -> list[int]:
    """The node ids of a materialized path "/1/4/9/", from the root down."""
    return [int(p) for p in path.strip("/").split("/") if p]


class Base(DeclarativeBase):
    pass


class JurisdictionNode(Base):
    __tablename__ = "jurisdiction_node"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdiction_node.id"))
    # Materialized path "/1/4/9/": a subtree is one indexed prefix match.
    path: Mapped[str] = mapped_column(String(400), index=True)
    key_prefix: Mapped[str | None] = mapped_column(String(8))
    dept_type: Mapped[str | None] = mapped_column(String(32))

    parent: Mapped[JurisdictionNode | None] = relationship(remote_side=[id])

    __table_args__ = (Index("ix_node_parent_dept", "parent_id", "dept_type"),)

    def ancestor_ids(self) -> list[int]:
        """Ids from the root down to this node, inclusive."""
        return path_ids(self.path)


class User(Base):
    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # when the official last chose their own password (None: still the one an organisation
    # file gave); `gridflow load-org` then leaves it alone
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    roles: Mapped[list[RoleAssignment]] = relationship(back_populates="user", lazy="selectin")

    @property
    def password_stamp(self) -> str:
        """Changes with every new password (`passwords.password_stamp`)."""
        return password_stamp(self.password_hash or "")


class RoleAssignment(Base):
    """A role held at a node: the unit of both assignment and jurisdiction."""
    __tablename__ = "role_assignment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    node_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction_node.id"))

    user: Mapped[User] = relationship(back_populates="roles")
    node: Mapped[JurisdictionNode] = relationship(lazy="joined")

    __table_args__ = (
        UniqueConstraint("user_id", "role", "node_id", name="uq_role_assignment"),
        Index("ix_role_node", "role", "node_id"),
    )


class OrgChange(Base):
    """One change `gridflow load-org` made to the organisation: a node created or changed, a
    user created, changed, deactivated or reactivated, a role granted or withdrawn. Append-only
    like the audit trail (no code path updates or deletes a row): who loaded which file, when,
    and what changed from what. `scope_paths` holds the paths of the nodes the change concerns
    (" /1/4/ /1/4/9/ "), so an auditor reads the changes within their jurisdiction."""
    __tablename__ = "org_change"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(100), index=True)   # a node's code or a username
    detail: Mapped[dict] = mapped_column(JsonType, default=dict)
    scope_paths: Mapped[str] = mapped_column(Text, default="")


class OrgGeneration(Base):
    """One row whose `generation` changes (database triggers, migration 0011) whenever a
    jurisdiction node, a user's identity or activity, or a role assignment changes, so
    that in-memory copies of the organisation (engine/org_cache.py) know when to reload.
    It starts at a random value: a recreated database never matches an old copy."""
    __tablename__ = "org_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)


class ProcessVersion(Base):
    """One deployed version of a process; `content_hash` covers every file it was parsed from."""
    __tablename__ = "process_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_key: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    # {filename: text} of every BPMN/DMN file the process needs (its own + called + decisions).
    files: Mapped[dict] = mapped_column(JsonType)
    properties: Mapped[dict] = mapped_column(JsonType, default=dict)
    deployed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deployed_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # one content may be deployed again (a rollback to an older version's files): no
        # uniqueness on the hash; the version number is what is unique
        UniqueConstraint("process_key", "version", name="uq_process_version"),
    )


def latest_versions(session) -> list[ProcessVersion]:
    """The newest version of each deployed process, by process key. Their files are loaded
    when read (a version's files are its BPMN and DMN, often 100 KB: reading every version's
    for the newest few cost every inbox page more as versions accumulated)."""
    from sqlalchemy import and_, func, select
    from sqlalchemy.orm import defer
    newest = select(ProcessVersion.process_key, func.max(ProcessVersion.version).label("version")) \
        .group_by(ProcessVersion.process_key).subquery()
    return list(session.scalars(select(ProcessVersion).options(defer(ProcessVersion.files)).join(
        newest, and_(ProcessVersion.process_key == newest.c.process_key, ProcessVersion.version == newest.c.version))
        .order_by(ProcessVersion.process_key)))


class Case(Base):
    __tablename__ = "gf_case"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    business_key: Mapped[str] = mapped_column(String(40), unique=True)
    process_key: Mapped[str] = mapped_column(String(100), index=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"))
    grid_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction_node.id"))
    grid_path: Mapped[str] = mapped_column(String(400))
    status: Mapped[str] = mapped_column(String(16), default="open")
    title: Mapped[str] = mapped_column(String(200), default="")
    # The two governance dimensions every report cuts by (from the report form).
    category: Mapped[str | None] = mapped_column(String(40))
    colour: Mapped[str | None] = mapped_column(String(16))
    # Case fields reports filter on (category, colour, resolved_level …), copied from workflow data.
    summary: Mapped[dict] = mapped_column(JsonType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    next_timer_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    # consecutive failed attempts to fire this case's timers (reset on success)
    timer_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # hash of the newest audit row of this case (engine/audit.py): the head of its chain
    audit_head: Mapped[str | None] = mapped_column(String(64))
    row_version: Mapped[int] = mapped_column(Integer, default=1)
    # Facts the dashboard aggregates, copied from `summary` and `grid_path` on every
    # write by engine/case_facts.py, so that metrics are plain-column SQL aggregates.
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # time limit to close (办结时限)
    resolved_level: Mapped[str | None] = mapped_column(String(16))
    satisfaction: Mapped[str | None] = mapped_column(String(24))
    outcome: Mapped[str | None] = mapped_column(String(40))
    # the grid's ancestors by depth (1 = the root, a city in the standard tree): a subtree
    # is one indexed equality, and a drill-down one GROUP BY the next depth
    depth1_id: Mapped[int | None] = mapped_column(Integer)
    depth2_id: Mapped[int | None] = mapped_column(Integer)
    depth3_id: Mapped[int | None] = mapped_column(Integer)
    depth4_id: Mapped[int | None] = mapped_column(Integer)
    # written since the dashboard roll-ups last took this case in (engine/rollup.py): set by
    # the same hook on every write, cleared by `gridflow metrics refresh` / the worker
    rollup_dirty: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The token of the report form the case was started from (web/cases.py): a form sent twice
    # (a double tap on a slow phone, the back button and 提交 again) starts one case, not two;
    # unique per official, so the second start finds the first (WorkflowService.start_case).
    start_token: Mapped[str | None] = mapped_column(String(64))

    __mapper_args__ = {"version_id_col": row_version}
    __table_args__ = (
        Index("uq_case_start_token", "created_by_id", "start_token", unique=True),
        Index("ix_case_grid_path", "grid_path"),
        Index("ix_case_status_created", "status", "created_at"),
        # case search (engine/search.py): newest first, in a subtree, of a process
        Index("ix_case_created", "created_at"),
        Index("ix_case_grid_created", "grid_path", "created_at"),
        Index("ix_case_process_status_created", "process_key", "status", "created_at"),
        Index("ix_case_depth1_created", "depth1_id", "created_at"),
        Index("ix_case_depth2_created", "depth2_id", "created_at"),
        Index("ix_case_depth3_created", "depth3_id", "created_at"),
        Index("ix_case_depth4_created", "depth4_id", "created_at"),
        Index("ix_case_gridid_created", "grid_id", "created_at"),
        Index("ix_case_creator_process_created", "created_by_id", "process_key", "created_at"),  # 入户走访 per worker
        # overdue now: open cases past their time limit
        Index("ix_case_status_due", "status", "due_at"),
        # the roll-ups (engine/rollup.py): cases written since the last refresh; and the
        # few cases whose month bucket cannot tell whether they closed / fell due by a moment
        Index("ix_case_rollup_dirty", "id", sqlite_where=text("rollup_dirty = 1"),
              postgresql_where=text("rollup_dirty = true")),
        Index("ix_case_closed_due", "closed_at", "due_at"),
        Index("ix_case_due", "due_at"),
    )


class CaseState(Base):
    """The live part of a case's SpiffWorkflow state (completed history is pruned
    into `audit_event`), kept apart from `gf_case` so listing cases never loads it."""
    __tablename__ = "case_state"

    case_id: Mapped[int] = mapped_column(ForeignKey("gf_case.id", ondelete="CASCADE"), primary_key=True)
    serializer_version: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(Text)


NO_DUE_DATE = datetime(9999, 12, 31, tzinfo=timezone.utc)


class WorkItem(Base):
    """A READY user task, mirrored for inboxes. Its id is the SpiffWorkflow task id."""
    __tablename__ = "work_item"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("gf_case.id", ondelete="CASCADE"))
    process_key: Mapped[str] = mapped_column(String(100))
    spec_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    lane: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str | None] = mapped_column(String(32))
    # Candidates: holders of `role` at `candidate_node_id`, plus `work_item_candidate` rows.
    candidate_node_id: Mapped[int | None] = mapped_column(ForeignKey("jurisdiction_node.id"))
    grid_path: Mapped[str] = mapped_column(String(400))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    unresolved: Mapped[bool] = mapped_column(Boolean, default=False)
    form_key: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # due_at, or NO_DUE_DATE: one non-null key the inbox indexes can be read in order by
    # on both databases ("no due date" sorts last), where NULLs would sort differently.
    sort_due: Mapped[datetime] = mapped_column(UtcDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # times a supervisor pressed 督办 on this task (kept for the evaluation)
    urge_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        # assignee_id last: the inbox count of unclaimed tasks reads the index alone (migration 0013)
        Index("ix_work_item_group", "status", "role", "candidate_node_id", "sort_due", "assignee_id"),
        Index("ix_work_item_assignee", "status", "assignee_id", "sort_due"),
        # a case's open items without scanning its (possibly thousands of) completed ones
        Index("ix_work_item_case_status", "case_id", "status"),
        # the supervision board: open tasks overdue or due soon, in due order
        Index("ix_work_item_status_due", "status", "sort_due"),
        # case search by task: the cases that had a given user task
        Index("ix_work_item_spec_case", "spec_id", "case_id"),
        # the dashboard: tasks of a kind completed in a period (verifications, follow-ups …)
        Index("ix_work_item_spec_completed", "spec_id", "completed_at"),
        # the dashboard's grid-worker table: what the 100 busiest reporters completed in a period
        Index("ix_work_item_by_spec_completed", "completed_by_id", "spec_id", "completed_at"),
    )


class WorkItemCandidate(Base):
    """Explicit candidate users of a work item (chosen in an earlier form)."""
    __tablename__ = "work_item_candidate"

    work_item_id: Mapped[str] = mapped_column(ForeignKey("work_item.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), primary_key=True)

    __table_args__ = (Index("ix_candidate_user", "user_id"),)


class AuditEvent(Base):
    """Append-only trail. Also the path history: one `step` event per BPMN
    element a case passed through, with the element it came from."""
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("gf_case.id"), index=True)
    work_item_id: Mapped[str | None] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    bpmn_id: Mapped[str | None] = mapped_column(String(100))
    bpmn_name: Mapped[str | None] = mapped_column(String(200))
    flow_from: Mapped[str | None] = mapped_column(String(100))
    data: Mapped[dict] = mapped_column(JsonType, default=dict)
    # tamper evidence (engine/audit.py): the case's previous row's hash, and this row's
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # case search by participant: the cases a person acted on
        Index("ix_audit_actor_case", "actor_id", "case_id"),
        # the dashboard: steps of a kind in a period (escalations, 返工, 督办)
        Index("ix_audit_bpmn_at", "bpmn_id", "at"),
        Index("ix_audit_type_at", "event_type", "at"),
    )


class AuditCheckpoint(Base):
    """A seal over every audit row written since the previous checkpoint, chained:
    catches a case's whole trail being removed together with its head."""
    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    first_event_id: Mapped[int] = mapped_column(BigInteger)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    event_count: Mapped[int] = mapped_column(Integer)
    # unique: two workers sealing at once cannot fork the chain (the second insert fails)
    prev_digest: Mapped[str] = mapped_column(String(64), unique=True)
    digest: Mapped[str] = mapped_column(String(64))


class CaseSequence(Base):
    """Per-prefix, per-year counter behind business keys like LX-2026-000123."""
    __tablename__ = "case_sequence"

    prefix: Mapped[str] = mapped_column(String(8), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Attachment(Base):
    """A file (photo, scan) stored on disk under the upload folder; served only to
    users who may see its case. `case_id` is empty between upload and the start
    or completion that claims it."""
    __tablename__ = "attachment"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("gf_case.id", ondelete="CASCADE"), index=True)
    work_item_id: Mapped[str | None] = mapped_column(String(36))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(400))
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Incident(Base):
    """Something the engine could not do by itself (a timer that keeps failing):
    shown to admins with the error, never silently dropped."""
    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("gf_case.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Notification(Base):
    """An in-app notification for one official: a new task, a reminder or
    escalation from the process, a 督办, an incident. Written in the transaction
    that caused it; channels (SMS, messaging apps) are called after the commit."""
    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    # new_task | reminder | escalation | urge | incident
    kind: Mapped[str] = mapped_column(String(16))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("gf_case.id", ondelete="CASCADE"))
    work_item_id: Mapped[str | None] = mapped_column(String(36))
    subject: Mapped[str] = mapped_column(String(200), default="")   # task or element name
    note: Mapped[str | None] = mapped_column(String(500))             # the 督办 note, the incident's error
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_notification_user", "user_id", "id"),             # my list, newest first
        Index("ix_notification_unread", "user_id", "read_at"),      # the unread count in the top bar
        Index("ix_notification_case", "case_id"),                   # cascade from gf_case
    )


class FormRevision(Base):
    """A form definition saved from the designer's form editor. Revisions are never
    changed: a process pins one by naming `key@revision` as a task's formKey, so a task
    keeps rendering the form its process version was deployed with. A bare `key` is the
    shipped default in forms/<key>.yaml."""
    __tablename__ = "form_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    form_key: Mapped[str] = mapped_column(String(100))
    revision: Mapped[int] = mapped_column(Integer)
    definition: Mapped[str] = mapped_column(Text)          # the YAML text as the designer wrote it
    content_hash: Mapped[str] = mapped_column(String(64))
    saved_at: Mapped[datetime] = mapped_column(UtcDateTime)
    saved_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("form_key", "revision", name="uq_form_revision"),
        UniqueConstraint("form_key", "content_hash", name="uq_form_revision_hash"),
    )


class EvaluationScore(Base):
    """One score a grid worker gave a unit in the monthly reverse evaluation (逆向考评),
    copied from the finished `reverse_evaluation` case by engine/case_facts.py."""
    __tablename__ = "evaluation_score"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("gf_case.id", ondelete="CASCADE"), index=True)
    period: Mapped[str] = mapped_column(String(7))          # YYYY-MM evaluated
    evaluator_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    unit_node_id: Mapped[int] = mapped_column(ForeignKey("jurisdiction_node.id"))
    unit_kind: Mapped[str] = mapped_column(String(16))      # community | town | department
    score: Mapped[int] = mapped_column(Integer)
    scored_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_evaluation_unit_scored", "unit_node_id", "scored_at"),
                      Index("ix_evaluation_scored", "scored_at"))


class ScheduledStart(Base):
    """A case started by a timer start event for one period and one person: the unique
    key makes two timer workers start it exactly once (engine/scheduled_starts.py)."""
    __tablename__ = "scheduled_start"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    process_key: Mapped[str] = mapped_column(String(100))
    period: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("gf_case.id", ondelete="SET NULL"))
    claimed_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("process_key", "period", "user_id", name="uq_scheduled_start"),)


# ------------------------------------------------------------------ dashboard roll-ups
# engine/rollup.py: what each case counted for at the last refresh, and the counts per
# jurisdiction node (every level: 0 = the whole tree, 1-4 = depthN, 5 = grid) and month
# of registration (UTC). Key columns are never NULL ('' / 0 stand for "none") so that
# they can form the primary keys the refresh adds its deltas to.

class RollupCase(Base):
    """A case as the roll-ups last counted it (no foreign key: it must outlive nothing)."""
    __tablename__ = "rollup_case"

    case_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    row_version: Mapped[int] = mapped_column(Integer)
    month: Mapped[str] = mapped_column(String(7))
    d1: Mapped[int] = mapped_column(Integer)
    d2: Mapped[int] = mapped_column(Integer)
    d3: Mapped[int] = mapped_column(Integer)
    d4: Mapped[int] = mapped_column(Integer)
    grid: Mapped[int] = mapped_column(Integer)
    process_key: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(40))
    colour: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    resolved_level: Mapped[str] = mapped_column(String(16))
    satisfaction: Mapped[str] = mapped_column(String(24))
    outcome: Mapped[str] = mapped_column(String(40))
    closed_month: Mapped[str] = mapped_column(String(7))
    due_month: Mapped[str] = mapped_column(String(7))
    limited: Mapped[int] = mapped_column(SmallInteger)
    on_time: Mapped[int] = mapped_column(SmallInteger)
    reporter_id: Mapped[int] = mapped_column(Integer)


class RollupCaseTask(Base):
    """A petition's task of one kind as last counted: done, done late, earliest open due month."""
    __tablename__ = "rollup_case_task"

    case_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    spec: Mapped[str] = mapped_column(String(100), primary_key=True)
    completed: Mapped[int] = mapped_column(SmallInteger)
    late: Mapped[int] = mapped_column(SmallInteger)
    open_due_month: Mapped[str] = mapped_column(String(7))


class RollupCases(Base):
    __tablename__ = "rollup_cases"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    process_key: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    resolved_level: Mapped[str] = mapped_column(String(16), primary_key=True)
    satisfaction: Mapped[str] = mapped_column(String(24), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(40), primary_key=True)
    closed_month: Mapped[str] = mapped_column(String(7), primary_key=True)
    due_month: Mapped[str] = mapped_column(String(7), primary_key=True)
    limited: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    on_time: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    parent_id: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_rollup_cases_parent", "level", "parent_id", "month"),)


class RollupDims(Base):
    __tablename__ = "rollup_dims"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    dim: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(40), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class RollupTasks(Base):
    __tablename__ = "rollup_tasks"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    spec: Mapped[str] = mapped_column(String(100), primary_key=True)
    completed: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    late: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    open_due_month: Mapped[str] = mapped_column(String(7), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class RollupReports(Base):
    __tablename__ = "rollup_reports"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class RollupState(Base):
    """One row once the roll-ups are built; the dashboard reads them only then."""
    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    built_at: Mapped[datetime] = mapped_column(UtcDateTime)
    refreshed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LoginAttempt(Base):
    """Every password login, as it went (engine/login_guard.py): who tried (the name as typed,
    and the account if there is one), when, from where, by which door, and the outcome:
    `succeeded`, `failed`, `refused_locked` (the name was locked; the password not even
    checked) or `unlocked` (an administrator lifted a lock). Append-only, as the audit trail:
    the failure count and the lock are read from these rows."""
    __tablename__ = "login_attempt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(16))
    via: Mapped[str] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index("ix_login_attempt_username_at", "username", "at"),)


# the hooks that keep the dashboard's fact columns in step with every write
from . import case_facts  # noqa: E402,F401  (registers mapper events; needs the classes above)

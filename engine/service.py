"""The engine service: the one API the web, the CLI, workers and tests call.

Every transition (start, claim, unclaim, complete) is one database transaction
opened by `Database.unit_of_work`: load the case (row lock on PostgreSQL, a
version check everywhere), run SpiffWorkflow, record the steps it took, prune
finished history, save the live state, mirror READY user tasks as work items,
append audit events, commit. Any error rolls the whole transition back.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from sqlalchemy import and_, bindparam, delete, func, not_, or_, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.exc import StaleDataError
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import CallActivity
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState

from forms import FormRegistry, FormValidationError, to_task_data
from forms.safety import PROBLEM_MESSAGES, find_unstorable, storable_ref

from . import audit, clock, login_guard
from .access import can_view_case, holds_role_within, is_read_only, start_node_path
from .attachments import AttachmentStore
from .bpmn import ParsedProcess, all_specs, data_key, is_user_task, parse_process, user_task_info
from .core_writes import (connection_of, insert_new, insert_rows_now, new_row_object, query,
                          update_changed_many)
from .db import Database, deferred_inserts
from .diagram import highlights, process_file
from .driver_reads import DriverRead, Rows
from .english_names import EnglishNames
from .errors import (AlreadyStarted, Conflict, CredentialsChanged, InactiveAccount, InvalidInput, NotFound,
                     PermissionDenied, ProcessError)
from .lanes import LaneResolver, parse_lane, stored_lane
from .models import (NO_DUE_DATE, ROLE_NAMES_ZH, Attachment, AuditEvent, Case, CaseSequence, CaseState,
                     JurisdictionNode, ProcessVersion, User, WorkItem, WorkItemCandidate, latest_versions, path_ids)
from .notifications import PROCESS_FAILED, PROCESS_FAILED_AT_START, LoggingChannel, Notifier
from .org import record_change
from .org_cache import OrgCache, OrgView, current_generation, load_user, snapshot_nodes, view_of
from .passwords import (StampedActor, check_password, check_password_of_nobody, hash_password,
                        password_problems, password_stamp)
from .personal_data import mask_value, personal_fields
from .state import (LiveWorkflowCache, StateSerializer, branches_a_join_holds, collect_finished_steps, find_task,
                    private_specs, prune_history, restore_trigger_connections, run_engine, specs_mutate_at_runtime,
                    tasks_in_state, tasks_in_tree_order, waiting_event_ids)
from .sandbox import SCRIPT_ENGINE, SandboxedEnvironment
from .supervision import Supervision

log = logging.getLogger("gridflow.engine")

SUMMARY_VALUE_MAX = 200
UNCLAIMED_UPLOAD_DAYS = 7                 # a pending upload no form took by then is removed (the worker)
# Due first (no due date last), then older tasks, older cases; the same order inside
# every inbox branch and outside, so per-branch LIMITs never drop a row of the page.
INBOX_ORDER = (WorkItem.sort_due, WorkItem.created_at, WorkItem.case_id, WorkItem.id)
SUMMARY_KEYS_MAX = 60
DUE_DATE_SANDBOX = SandboxedEnvironment(seconds=0.5)
STATE_ROWS = "gf_state_rows"              # Session.info: {case id: CaseState read ahead of `_load`}
PREFETCHED_OPEN_ITEMS = "gf_open_items"   # Session.info: {case id: {item id: open WorkItem}}
LIVE_AFTER_COMMIT = "gf_live_after_commit"  # Session.info: workflows to keep in memory once committed


def describe_process_error(exc: Exception) -> str:
    """SpiffWorkflow's message, plus the data input/output it names (its text alone says
    only "a required Data Input", not which one)."""
    text = str(exc).strip()
    for attr, label in (("data_input", "data input"), ("data_output", "data output")):
        spec = getattr(exc, attr, None)
        if spec is not None:
            text += f" ({label} '{getattr(spec, 'bpmn_id', None) or getattr(spec, 'name', spec)}')"
    return text


# Parses shared by every SpecCache of the process, by (process key, hash of the files): the
# same files parse to the same specs whichever database row holds them (the test suite makes
# a service, and so a SpecCache, per test; a worker makes one). Specs SpiffWorkflow changes
# at run time are copied per case (`parsed.mutable`), so sharing them is safe.
_PARSED_BY_CONTENT: dict[tuple[str, str], ParsedProcess] = {}


class SpecCache:
    """Parsed specs per deployed version. A version's files never change, so a
    parse is good for the life of the process."""

    def __init__(self):
        self._parsed: dict[int, ParsedProcess] = {}
        self._rows: dict[int, VersionSnapshot] = {}

    def get(self, version: ProcessVersion) -> ParsedProcess:
        parsed = self._parsed.get(version.id)
        if parsed is None:
            key = (version.process_key, version.content_hash)
            parsed = _PARSED_BY_CONTENT.get(key)
            if parsed is None:
                parsed = parse_process(version.files, version.process_key)
                parsed.mutable = specs_mutate_at_runtime(parsed.spec, parsed.subprocess_specs)
                _PARSED_BY_CONTENT[key] = parsed
            self._parsed[version.id] = parsed
        return parsed

    def version_row(self, session: Session, version_id: int) -> VersionSnapshot:
        """The version's row as a frozen snapshot (its files left out), kept once its
        specs are parsed: a version row never changes after its deployment."""
        snapshot = self._rows.get(version_id)
        if snapshot is None:
            row = session.scalar(select(ProcessVersion).where(ProcessVersion.id == version_id)
                                 .options(defer(ProcessVersion.files)))
            self.get(row)
            snapshot = self._rows[version_id] = VersionSnapshot(
                row.id, row.process_key, row.version, row.name, row.content_hash, dict(row.properties or {}))
        return snapshot

    def for_case(self, session: Session, case: Case) -> ParsedProcess:
        """The case's parsed version, reading the version row only on a cache miss."""
        parsed = self._parsed.get(case.process_version_id)
        if parsed is None:
            parsed = self.get(session.get(ProcessVersion, case.process_version_id))
        return parsed


@dataclass(frozen=True)
class VersionSnapshot:
    """Reads like `models.ProcessVersion` for what a start asks of it; shared by threads."""
    id: int
    process_key: str
    version: int
    name: str
    content_hash: str
    properties: dict


@dataclass
class InboxFilters:
    process_key: str | None = None
    spec_id: str | None = None
    colour: str | None = None
    overdue: bool = False
    business_key: str | None = None
    limit: int = 50
    offset: int = 0
    # the ids `spec_id` stands for (`WorkflowService.same_named_tasks`), resolved before the
    # inbox's session opens: SQLite allows one open transaction at a time
    spec_ids: tuple = ()


@dataclass
class InboxRow:
    item: WorkItem
    business_key: str
    case_title: str
    colour: str | None
    grid_name: str
    claimed_by: str | None


@dataclass
class CaseView:
    case: Case
    open_items: list[WorkItem] = field(default_factory=list)
    # the organisation as the transaction saw it (engine/org_cache.py): the answer's
    # names come from it rather than from another statement
    org: OrgView | None = None

    @property
    def id(self):
        return self.case.id

    @property
    def business_key(self):
        return self.case.business_key

    @property
    def status(self):
        return self.case.status


@functools.cache
def _hot_statements() -> dict:
    """The statements every transition runs, built once: building a SELECT with an alias
    and joins costs more Python than executing it. Parameters are bound at execution.
    The locks are `DriverRead`s: their rows become ORM objects without the ORM's loading
    (engine/driver_reads.py)."""
    task_id, case_id = bindparam("task_id"), bindparam("case_id")
    item_t, case_t, state_t = WorkItem.__table__, Case.__table__, CaseState.__table__
    other_t = item_t.alias("other_item")
    # PostgreSQL: the case's row version as the statement's snapshot saw it. A statement
    # that waited for the case lock returns the locked row as the official it waited
    # for left it, and everything else as before the wait. Every change to a case
    # writes its row (its audit chain's head is there: engine/audit.py), so an
    # unchanged version says nothing was changed while we waited: no re-read.
    before_wait = case_t.alias("case_before_wait")
    snapshot_version = (select(before_wait.c.row_version).where(before_wait.c.id == item_t.c.case_id)
                        .scalar_subquery())

    def read(*extra, with_state=False, locked_case=True):
        """The item and (`locked_case`) its case, locked, the org generation and `extra`
        values; `with_state`: the case's state and, one row each, its other open work items
        (if any): the state for `_load`, the items for `_sync_work_items`."""
        parts, joined = [Rows(WorkItem)], item_t
        if locked_case:
            parts += [Rows(Case), current_generation(), *extra]
            joined = joined.join(case_t, case_t.c.id == item_t.c.case_id)
        if with_state:
            parts += [Rows(CaseState), Rows(WorkItem, other_t)]
            joined = (joined.join(state_t, state_t.c.case_id == item_t.c.case_id)
                      .outerjoin(other_t, and_(other_t.c.case_id == item_t.c.case_id, other_t.c.status == "open",
                                               other_t.c.id != task_id)))

        def build(columns):
            statement = select(*columns).select_from(joined).where(item_t.c.id == task_id)
            return statement.with_for_update(of=case_t) if locked_case else statement
        return DriverRead(parts, build)

    return {
        "lock": read(),
        "lock_pg": read(snapshot_version),
        "lock_with_state": read(with_state=True),                          # SQLite
        "lock_with_state_pg": read(snapshot_version, with_state=True),
        # PostgreSQL, after a lock that waited for a changed case: what that official left
        "reread_with_state": read(with_state=True, locked_case=False),
        "open_items": select(WorkItem).where(WorkItem.case_id == case_id, WorkItem.status == "open"),
    }


@functools.cache
def _start_statement(dialect: str):
    """A start's first statement: the org generation, the process's latest version and the
    new case's id, in one round trip. The id: PostgreSQL's sequence; on SQLite max + 1,
    ours because BEGIN IMMEDIATE holds the write lock (as SQLite itself would choose)."""
    next_id = (func.nextval(func.pg_get_serial_sequence(Case.__tablename__, "id")) if dialect == "postgresql"
               else select(func.coalesce(func.max(Case.id), 0) + 1).scalar_subquery())
    latest = _latest_version(ProcessVersion.id, bindparam("process_key")).scalar_subquery()
    return select(current_generation(), latest, next_id)


def _latest_version(what, process_key):
    """SELECT `what` of the process's newest deployed version."""
    return (select(what).where(ProcessVersion.process_key == process_key)
            .order_by(ProcessVersion.version.desc()).limit(1))


def _check_process_key(process_key) -> None:
    if not storable_ref(process_key):
        raise NotFound("no such process", zh="找不到该流程", field="process")


_NEXT_NUMBER = (update(CaseSequence)
                .where(CaseSequence.prefix == bindparam("key_prefix"), CaseSequence.year == bindparam("key_year"))
                .values(last=CaseSequence.last + 1).returning(CaseSequence.last))


def _not_deployed(process_key: str) -> NotFound:
    return NotFound(f"process '{process_key}' is not deployed; run `gridflow deploy` first",
                    zh=f"流程“{process_key}”尚未部署；请管理员先运行 gridflow deploy", field="process")


# a transition writes these rows by the driver (`write_transitions`), in this order
_CORE_UPDATED = {Case: 0, WorkItem: 1, CaseState: 2}
MANY_CASES = "gf_many_cases"  # Session.info: a batch of transitions, written together at its end
NEW_ITEMS = "gf_new_items"             # Session.info: work items to INSERT (`write_transitions`)
NEW_CANDIDATES = "gf_new_candidates"   # Session.info: their candidates' rows
NEW_STATES = "gf_new_states"           # Session.info: new cases' state rows to INSERT
NEW_CASES = "gf_new_cases"             # Session.info: new cases' own rows to INSERT, first of the writes
PENDING_KEY = "~new-"  # a starting case's business key until its number is taken; never committed


def _password_refused(problems: dict) -> InvalidInput:
    """A refused password change: {field: [(English, Chinese)]} as `InvalidInput`."""
    return InvalidInput("the password was not changed", zh="密码未修改，请按提示修改后重试",
                        fields={k: [en for en, _zh in v] for k, v in problems.items()},
                        fields_zh={k: [zh for _en, zh in v] for k, v in problems.items()})


class WorkflowService:
    def __init__(self, db: Database, forms: FormRegistry | None = None, upload_dir=None, channels=None):
        self.db = db
        self.forms = forms if forms is not None else FormRegistry()
        self.specs = SpecCache()
        self.serializer = StateSerializer()
        self.live = LiveWorkflowCache()
        self.org = OrgCache()
        self.attachments = AttachmentStore(upload_dir or "instance/uploads")
        # notification channels, called after each commit (engine/notifications.py)
        self.channels = list(channels) if channels is not None else [LoggingChannel()]
        self.notifier = Notifier(self)
        self.supervision = Supervision(self)
        self.english_names = EnglishNames(db)   # for the English UI

    # ---------------------------------------------------------------- lookups

    @staticmethod
    def _user(session: Session, actor) -> User:
        """The acting official, roles and their nodes loaded. In a transition that attached
        the org view (`OrgCache`), a read-only snapshot shared while the org is unchanged."""
        ref = actor.id if isinstance(actor, (User, StampedActor)) else actor
        if not storable_ref(ref):
            raise InactiveAccount(f"unknown or inactive user '{str(actor)[:40]!r}'", zh="用户不存在或已停用")
        key = ref if isinstance(ref, int) else str(ref)
        view = view_of(session)
        user = view.user(session, key) if view is not None else load_user(session, key)
        if user is None or not user.active:
            raise InactiveAccount(f"unknown or inactive user '{ref}'", zh="用户不存在或已停用")
        if isinstance(actor, StampedActor) and not actor.matches(user.password_stamp):
            raise CredentialsChanged("the password was changed after this token was issued; log in again",
                                     zh="密码已更改，此前签发的访问令牌已失效；请重新登录")
        return user

    @staticmethod
    def _node(session: Session, ref) -> JurisdictionNode:
        if not isinstance(ref, JurisdictionNode) and not storable_ref(ref):
            raise NotFound(f"no jurisdiction node {str(ref)[:40]!r}", zh="找不到该辖区", field="grid")
        view = view_of(session)
        if view is not None and isinstance(ref, str):
            node = view.node_by_code(session, ref)  # a read-only snapshot, shared while the org is unchanged
        elif isinstance(ref, JurisdictionNode):
            node = session.get(JurisdictionNode, ref.id)
        elif isinstance(ref, int):
            node = session.get(JurisdictionNode, ref)
        else:
            node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == str(ref)))
        if node is None:
            raise NotFound(f"no jurisdiction node '{ref}'", zh=f"找不到辖区“{ref}”", field="grid")
        return node

    @staticmethod
    def latest_version(session: Session, process_key: str) -> ProcessVersion:
        _check_process_key(process_key)
        # the files (all the version's BPMN and DMN XML) load only if asked for
        version = session.scalar(_latest_version(ProcessVersion, process_key).options(defer(ProcessVersion.files)))
        if version is None:
            raise _not_deployed(process_key)
        return version

    def _validate_form(self, form_key: str | None, data: dict, context: dict | None = None) -> dict:
        if not isinstance(data or {}, dict):
            raise InvalidInput("the submitted data must be a set of named fields", fields={"data": ["not an object"]},
                               zh="提交的数据必须是按字段填写的内容")
        if not form_key:
            found = find_unstorable(data or {})
            if found:
                raise InvalidInput("some fields cannot be stored", fields={found[0] or "data": [PROBLEM_MESSAGES[found[1]]]},
                                   zh="部分字段包含无法保存的内容，请修改")
            return dict(data or {})
        form = self.forms.get(form_key)
        if form is None:
            raise ProcessError(f"form '{form_key}' is missing from forms/; ask a designer to add it",
                               zh=f"缺少表单“{form_key}”，请联系流程设计员补充")
        try:
            return to_task_data(form, form.validate(data, now=clock.now(), context=context))
        except FormValidationError as exc:
            raise _form_refused(exc) from None

    def _check_order(self, form_key: str | None, clean: dict, task_data: dict) -> None:
        """A date of the submission that comes before a date of the case it follows (a review
        requested before the reply it disputes) is refused, naming both: checked here, where
        the task's data is at hand, since the legal windows count from these dates."""
        form = self.forms.get(form_key) if form_key else None
        if form is None:
            return
        try:
            form.check_order(clean, task_data)
        except FormValidationError as exc:
            raise _form_refused(exc) from None

    def _check_people(self, session, form_key: str | None, clean: dict, grid_path: str) -> None:
        """Each person a form names (a case-owning leader, a responsible person …) is an
        active official holding a role at the case's grid or above (a department's role
        counts at its town or county), one of the field's `roles` if it lists any: the
        task data's `assignee` gives them tasks, so a typo or an official of another place
        must be refused here, not found in a stranger's inbox."""
        form = self.forms.get(form_key) if form_key else None
        people = [f for f in form.input_fields if f.type == "person" and clean.get(f.name)] if form else []
        if not people:
            return
        names = {clean[f.name] for f in people}
        found = {u.username: u for u in session.scalars(select(User).where(
            User.username.in_(sorted(names)), User.active.is_(True)))}
        ancestors = set(path_ids(grid_path))
        problems, problems_zh = {}, {}
        for f in people:
            user = found.get(clean[f.name])
            if user is None:
                problems[f.name] = ["no such active official"]
                problems_zh[f.name] = [f"找不到在用的账号“{clean[f.name]}”，请填写正确的用户名"]
                continue
            if not holds_role_within(user, ancestors, f.roles):
                if f.roles:
                    problems[f.name] = [f"{user.display_name} holds no role {' or '.join(f.roles)} at this case's "
                                        "grid or above; choose another official"]
                    roles_zh = "或".join(ROLE_NAMES_ZH.get(r, r) for r in f.roles)
                    problems_zh[f.name] = [f"{user.display_name}在本案件所属辖区没有{roles_zh}职务，请另选人员"]
                else:
                    problems[f.name] = [f"{user.display_name} holds no role at this case's grid or above; "
                                        "choose another official"]
                    problems_zh[f.name] = [f"{user.display_name}在本案件所属辖区没有任何职务，请另选人员"]
                continue
            unit = clean.get(f.unit_from) if f.unit_from else None
            if unit and not _works_in_unit(user, unit, ancestors):
                # 责任人 answers for 责任单位's 四包: one of another unit cannot (领导包案)
                unit_field = next(u for u in form.fields if u.name == f.unit_from)
                unit_name = next((c for c in unit_field.choices if c["value"] == unit), {"zh": unit, "en": unit})
                problems[f.name] = [f"{user.display_name} ({f.label['en']}) holds no role in the "
                                    f"{unit_name['en']} of this case's place, the {unit_field.label['en']} chosen; "
                                    "choose one of its officials or another unit"]
                problems_zh[f.name] = [f"{f.label['zh']}{user.display_name}不在所选{unit_field.label['zh']}"
                                       f"“{unit_name['zh']}”（本案件所属辖区的）任职，请另选该单位人员或改选{unit_field.label['zh']}"]
        if problems:
            raise InvalidInput("some people named cannot take this case", fields=problems,
                               zh="所填人员有误，请按提示修改后重新提交", fields_zh=problems_zh)

    def _check_earlier_cases(self, session, form_key: str | None, clean: dict, user: User) -> None:
        """Each earlier case a form names (原信访事项编号 of a repeat petition) exists, is a case
        of the field's process that the official may see, concerns the same people (the
        fields of `same`), and, when the field is required by its `required_if` (the petition
        is recorded as a repeat), has the data the field asks (closed by a final re-review):
        a repeat petition is refused on the strength of that case, so a typo or another
        person's case must be refused here."""
        form = self.forms.get(form_key) if form_key else None
        named = [f for f in form.input_fields if f.earlier_case and isinstance(clean.get(f.name), str)
                 and clean[f.name].strip()] if form else []
        problems, problems_zh = {}, {}
        for f in named:
            rule, number = f.earlier_case, clean[f.name].strip()
            label_zh, label_en = f.label["zh"], f.label["en"]
            earlier = session.scalar(select(Case).where(Case.business_key == number))
            if earlier is None or not can_view_case(session, user, earlier):
                # one outside the official's jurisdiction is as unknown to them as none
                problems[f.name] = [f"no case {number} that you may see; check the {label_en}"]
                problems_zh[f.name] = [f"找不到您可查看的案件“{number}”，请核对{label_zh}"]
                continue
            if earlier.process_key != rule["process"]:
                problems[f.name] = [f"{number} is a {earlier.process_key} case, not a {rule['process']} case; "
                                    f"check the {label_en}"]
                problems_zh[f.name] = [f"“{number}”不是{self._process_name(session, rule['process'])}案件，"
                                       f"请核对{label_zh}"]
                continue
            data = self._case_data(self._load(session, earlier, self.specs.for_case(session, earlier)))
            by_name = {x.name: x for x in form.fields}
            for same in rule["same"]:
                mine, theirs = _plain(clean.get(same)), _plain(data.get(same))
                if mine and mine != theirs:
                    other = by_name[same].label
                    problems[f.name] = [f"{number} is of {theirs or '(none)'}, not {mine} ({other['en']}); "
                                        f"check the {label_en} and the {other['en']}"]
                    problems_zh[f.name] = [f"“{number}”的{other['zh']}是{theirs or '（空）'}，不是{mine}；"
                                           f"请核对{label_zh}和{other['zh']}"]
                    break
            else:
                if f.required_by(clean) and any(data.get(k) != v for k, v in rule["data"].items()):
                    problems[f.name] = [f"{number} was not concluded as this requires "
                                        f"({', '.join(f'{k}={v!r}' for k, v in rule['data'].items())}); "
                                        f"check the {label_en}"]
                    problems_zh[f.name] = [f"“{number}”未按要求办结（{'、'.join(rule['data'])}），"
                                           f"请核对{label_zh}"]
        if problems:
            raise InvalidInput("the earlier case named does not fit", fields=problems,
                               zh="所填原案件有误，请按提示修改后重新提交", fields_zh=problems_zh)

    @staticmethod
    def _process_name(session, process_key: str) -> str:
        version = session.scalar(_latest_version(ProcessVersion, process_key).options(defer(ProcessVersion.files)))
        return version.name if version is not None else process_key

    def display_names(self, usernames) -> dict[str, str]:
        """{username: the official's name} of those that are accounts (a case page names
        the people its forms chose by name, not by login)."""
        names = sorted({n for n in usernames if isinstance(n, str) and n})
        if not names:
            return {}
        with self.db.read_session() as session:
            return dict(session.execute(select(User.username, User.display_name).where(User.username.in_(names))).all())

    # ----------------------------------------------------------- start a case

    def start_case(self, process_key: str, grid, data: dict, actor, start_token: str | None = None) -> CaseView:
        """Start a case. `start_token` names the form it was reported on (a page's report form):
        a second start with the same token by the same official starts nothing and raises
        AlreadyStarted naming the first case (a form sent twice must not report the matter twice)."""
        if start_token is not None and not (isinstance(start_token, str) and 0 < len(start_token) <= 64):
            raise ValueError("start_token: 1 to 64 characters")
        try:
            return self._commit_guarded(self._start_case, process_key, grid, data, actor, start_token)
        except ProcessError as exc:
            self._process_failed(exc, actor, process_key=process_key)
            raise
        except IntegrityError:
            # the same form sent twice at once: both passed the look-up, the first to commit
            # holds the token (uq_case_start_token) and this one names its case
            key = self._started_with(actor, start_token) if start_token is not None else None
            if key is None:
                raise
            raise AlreadyStarted(key) from None

    def _started_with(self, actor, start_token: str) -> str | None:
        with self.db.read_session() as session:
            return self._case_started_with(session, self._user(session, actor), start_token)

    @staticmethod
    def _case_started_with(session, user: User, start_token: str) -> str | None:
        """The number of the case `user` started from the form `start_token`, if any."""
        return session.scalar(select(Case.business_key).where(Case.created_by_id == user.id,
                                                              Case.start_token == start_token))

    def _start_case(self, session, process_key: str, grid, data: dict, actor,
                    start_token: str | None = None) -> CaseView:
        _check_process_key(process_key)
        # by the driver: on PostgreSQL the BEGIN goes with it, in the transaction's pipeline
        generation, version_id, case_id = query(session, _start_statement(connection_of(session).dialect.name),
                                                {"process_key": process_key})[0]
        self.org.attach(session, generation)
        user = self._user(session, actor)
        if start_token is not None and (earlier := self._case_started_with(session, user, start_token)):
            raise AlreadyStarted(earlier)
        grid_node = self._node(session, grid)
        if grid_node.level != "grid":
            raise InvalidInput(f"'{grid_node.name}' is a {grid_node.level}, not a grid; choose a grid",
                               zh=f"“{grid_node.name}”不是网格，请选择一个网格",
                               fields={"grid": ["must be a grid"]})
        if version_id is None:
            raise _not_deployed(process_key)
        version = self.specs.version_row(session, version_id)
        self._check_may_start(session, user, grid_node, version)
        parsed = self.specs.get(version)
        clean = self._validate_form(version.properties.get("startForm"), data)
        self._check_people(session, version.properties.get("startForm"), clean, grid_node.path)
        self._check_earlier_cases(session, version.properties.get("startForm"), clean, user)

        now = clock.now()
        case = Case(
            id=case_id, business_key=f"{PENDING_KEY}{case_id}",  # the number comes last: see below
            process_key=process_key, process_version_id=version.id, grid_id=grid_node.id,
            grid_path=grid_node.path, status="open", created_at=now, updated_at=now,
            created_by_id=user.id, summary={}, start_token=start_token)
        # The row goes in once, with what the first run of the process gives it (number,
        # title, summary, time limit), at the transition's writes: inserted here and updated
        # there, every start left a dead row version and an entry in each of the case's ~20
        # indexes behind it.
        session.info.setdefault(NEW_CASES, []).append(case)
        workflow = BpmnWorkflow(*self._specs_for_one_case(parsed), script_engine=SCRIPT_ENGINE)
        workflow.task_tree.data.update(clean)
        self._audit(session, case, "case_started", user, now, data=clean)
        self._run(workflow, case, label=("the new case", "新案件"))
        # The number is taken only now, after the process ran: its sequence row stays locked
        # to the commit (numbers have no gaps), and every other start of the same prefix
        # waits for it, so it is held for the shortest stretch of the transaction.
        case.business_key = self._next_business_key(session, grid_node, version, now)
        state_row = CaseState(case_id=case.id, serializer_version=self.serializer.version, state="")
        session.info.setdefault(NEW_STATES, []).append(state_row)  # inserted, state and all, with the writes
        workflow._gf_state_row = state_row
        session.info.setdefault(PREFETCHED_OPEN_ITEMS, {})[case.id] = {}  # a new case has none to look up
        open_items = self._after_transition(session, case, workflow, parsed, user, now)
        # the uploads point at the case's row, which is in now
        self._claim_attachments(session, user, case, version.properties.get("startForm"), clean, None)
        return CaseView(case, open_items)

    def _check_may_start(self, session, user: User, grid: JurisdictionNode, version: ProcessVersion):
        if is_read_only(user):
            raise PermissionDenied("auditors read cases; they cannot start them", zh="督查人员只能查看案件，不能发起")
        allowed = [r.strip() for r in (version.properties.get("startRoles") or "").split(",") if r.strip()]
        if holds_role_within(user, set(grid.ancestor_ids()), allowed):
            return
        who = " or ".join(allowed) if allowed else "a role"
        who_zh = "或".join(ROLE_NAMES_ZH.get(r, r) for r in allowed) if allowed else "任一职务"
        raise PermissionDenied(f"starting '{version.name}' in {grid.name} needs {who} held at that grid or above",
                               zh=f"在{grid.name}发起“{version.name}”需要在该网格或其上级担任{who_zh}")

    def _next_business_key(self, session, grid: JurisdictionNode, version, now) -> str:
        """The next number of the case's prefix and year, by one statement on the connection
        (the sequence row stays locked to the commit, so numbers have no gaps: a transition
        that fails gives its number back)."""
        prefix = version.properties.get("businessKeyPrefix")
        if not prefix:
            view = view_of(session)
            ids = grid.ancestor_ids()
            by_id = snapshot_nodes(session, view.nodes if view is not None else {}, ids)
            for nid in reversed(ids):
                if by_id[nid].key_prefix:
                    prefix = by_id[nid].key_prefix
                    break
        prefix = prefix or "GF"
        year = now.year
        for _attempt in range(3):
            # by the driver: on PostgreSQL answered together with the case row sent before it
            rows = query(session, _NEXT_NUMBER, {"key_prefix": prefix, "key_year": year})
            row = rows[0] if rows else None
            if row is None:
                try:
                    with session.begin_nested():
                        session.add(CaseSequence(prefix=prefix, year=year, last=0))
                except IntegrityError:
                    pass  # created concurrently; take the number from it
                continue
            return f"{prefix}-{year}-{row[0]:06d}"
        raise Conflict("could not allocate a case number; try again", zh="案件编号分配失败，请重试")

    # ---------------------------------------------------------------- inbox

    def _resolved(self, filters: InboxFilters | None) -> InboxFilters:
        filters = filters or InboxFilters()
        if filters.spec_id and not filters.spec_ids and isinstance(filters.spec_id, str) \
                and storable_ref(filters.spec_id):
            filters = replace(filters, spec_ids=tuple(
                self.same_named_tasks(filters.spec_id, filters.process_key)))
        return filters

    def inbox(self, actor, filters: InboxFilters | None = None) -> list[InboxRow]:
        filters = self._resolved(filters)
        with self.db.read_session() as session:
            return self._inbox_rows(session, self._user(session, actor), filters)

    def inbox_count(self, actor, filters: InboxFilters | None = None) -> int:
        filters = self._resolved(filters)
        with self.db.read_session() as session:
            return self._inbox_total(session, self._user(session, actor), filters)

    def inbox_page(self, actor, filters: InboxFilters | None = None) -> tuple[list[InboxRow], int]:
        """A page of the inbox and the number of tasks in it, the official read once (what
        the inbox page and the API show); no page is read when the count says it is empty."""
        filters = self._resolved(filters)
        with self.db.read_session() as session:
            user = self._user(session, actor)
            total = self._inbox_total(session, user, filters)
            if total <= filters.offset:
                return [], total
            return self._inbox_rows(session, user, filters), total

    def _inbox_rows(self, session, user: User, filters: InboxFilters) -> list[InboxRow]:
        rows = session.execute(self._inbox_query(session, user, filters)).all()
        return [InboxRow(item=r[0], business_key=r[1], case_title=r[2], colour=r[3],
                         grid_name=r[4], claimed_by=r[5]) for r in rows]

    def _inbox_total(self, session, user: User, filters: InboxFilters) -> int:
        # the branches are disjoint, so their counts add up: no UNION to deduplicate
        # (at 10^6 open tasks a town dispatcher's 20,000 ids took SQLite 134 ms to merge)
        counts = [select(func.count()).select_from(branch.subquery()).scalar_subquery()
                  for branch in self._inbox_branches(user, filters, limit=None)]
        return sum(session.execute(select(*counts)).one())

    @staticmethod
    def _check_filters(filters: InboxFilters) -> None:
        problems = {}
        for name in ("process_key", "spec_id", "colour", "business_key"):
            value = getattr(filters, name)
            if value is not None and not (isinstance(value, str) and storable_ref(value)):
                problems[name] = ["not a usable value"]
        if not (isinstance(filters.limit, int) and 1 <= filters.limit <= 1000):
            problems["limit"] = ["between 1 and 1000"]
        if not (isinstance(filters.offset, int) and 0 <= filters.offset <= 10_000_000):
            problems["offset"] = ["between 0 and 10,000,000"]
        if problems:
            raise InvalidInput("the inbox filters are not valid", fields=problems, zh="筛选条件无效")

    def _inbox_branches(self, user: User, filters: InboxFilters, limit: int | None):
        """One SELECT per way a task can be mine: assigned to me; unclaimed for one of my
        (role, node) pairs; unclaimed with me named, but not of my pairs (a task of a role
        lane may also name me), so that no task is in two branches and counts add up. Each
        reads its own index in due order, so a page costs offset + limit rows per branch
        however full the table is."""
        self._check_filters(filters)
        narrow = []
        if filters.process_key:
            narrow.append(WorkItem.process_key == filters.process_key)
        if filters.spec_id:
            narrow.append(WorkItem.spec_id.in_(filters.spec_ids or (filters.spec_id,)))
        if filters.overdue:
            narrow.append(WorkItem.due_at < clock.now())
        needs_case = bool(filters.colour or filters.business_key)
        if filters.colour:
            narrow.append(Case.colour == filters.colour)
        if filters.business_key:
            narrow.append(Case.business_key.like(filters.business_key.strip().upper() + "%"))
        of_my_pairs = [and_(WorkItem.role == role, WorkItem.candidate_node_id == node_id)
                       for role, node_id in sorted({(ra.role, ra.node_id) for ra in user.roles})]
        ways = [and_(WorkItem.assignee_id == user.id)]
        ways += [and_(pair, WorkItem.assignee_id.is_(None)) for pair in of_my_pairs]
        named = and_(WorkItem.assignee_id.is_(None), WorkItem.id.in_(
            select(WorkItemCandidate.work_item_id).where(WorkItemCandidate.user_id == user.id)))
        if of_my_pairs:   # NULL role or node: no pair of mine (NOT of NULL would drop the row)
            named = and_(named, or_(WorkItem.role.is_(None), WorkItem.candidate_node_id.is_(None),
                                    not_(or_(*of_my_pairs))))
        ways.append(named)
        branches = []
        for way in ways:
            query = select(WorkItem.id).where(WorkItem.status == "open", way, *narrow)
            if needs_case:
                query = query.join(Case, Case.id == WorkItem.case_id)
            if limit is not None:
                inner = query.add_columns(WorkItem.sort_due, WorkItem.created_at, WorkItem.case_id) \
                    .order_by(*INBOX_ORDER).limit(limit).subquery()
                query = select(inner.c.id)  # SQLite: ORDER BY/LIMIT only inside a subquery of a UNION
            branches.append(query)
        return branches

    def _inbox_query(self, session, user: User, filters: InboxFilters):
        mine = union(*self._inbox_branches(user, filters, limit=filters.offset + filters.limit)).subquery()
        claimer = User.__table__.alias("claimer")
        return (select(WorkItem, Case.business_key, Case.title, Case.colour, JurisdictionNode.name,
                       claimer.c.display_name)
                .join(mine, mine.c.id == WorkItem.id)
                .join(Case, Case.id == WorkItem.case_id)
                .join(JurisdictionNode, JurisdictionNode.id == Case.grid_id)
                .outerjoin(claimer, claimer.c.id == WorkItem.assignee_id)
                .order_by(*INBOX_ORDER)
                .limit(filters.limit).offset(filters.offset))

    @staticmethod
    def _is_candidate(session, user: User, item: WorkItem) -> bool:
        if item.role and item.candidate_node_id and any(
                ra.role == item.role and ra.node_id == item.candidate_node_id for ra in user.roles):
            return True
        return session.get(WorkItemCandidate, (item.id, user.id)) is not None

    def may_work(self, actor, task_id: str) -> bool:
        with self.db.read_session() as session:
            user = self._user(session, actor)
            item = session.get(WorkItem, task_id) if storable_ref(task_id) else None
            if item is None or item.status != "open":
                return False
            return item.assignee_id == user.id or (item.assignee_id is None and self._is_candidate(session, user, item))

    # ------------------------------------------------------- claim / unclaim

    def _locked_item(self, session, task_id: str, with_state: bool = False,
                     while_waiting=None) -> tuple[WorkItem, Case]:
        """The work item and its case, the case row locked (PostgreSQL) so that a second
        official waits here and then sees the item and the state as the first one left
        them: after a wait only the locked row is re-read, so when the case changed while
        we waited, the item (and the state, `with_state`, kept for `_load`) is read again
        by a later statement. SQLite's BEGIN IMMEDIATE has already serialised us before
        the first read, so one statement does. `while_waiting` runs while PostgreSQL answers."""
        if not storable_ref(task_id):
            raise NotFound("no such task", zh="找不到该任务")
        pg = self.db.is_postgres
        task_id = str(task_id)
        statements = _hot_statements()
        lock = statements[("lock_with_state" if with_state else "lock") + ("_pg" if pg else "")]
        receive = lock.send(session, {"task_id": task_id})
        if while_waiting is not None:
            while_waiting()
        rows = receive()
        if not rows:
            raise NotFound(f"no task '{task_id}'", zh="找不到该任务")
        item, case = rows[0][0], rows[0][1]
        self.org.attach(session, rows[0][2])
        if pg and case.row_version != rows[0][3]:  # we waited for someone who changed the case
            if with_state:
                rows = statements["reread_with_state"].rows(session, {"task_id": task_id})
                item = rows[0][0]
            else:
                session.refresh(item)
        if with_state:
            # the state for `_load`, the case's other open tasks for `_sync_work_items`
            session.info.setdefault(STATE_ROWS, {})[case.id] = rows[0][-2]
            session.info.setdefault(PREFETCHED_OPEN_ITEMS, {})[case.id] = {
                other.id: other for other in (row[-1] for row in rows) if other is not None}
        return item, case

    def _refuse_outsider(self, session, user: User, case: Case) -> None:
        """Whoever may not see the case is told nothing of the task: not its name, not that it
        was done, nor by whom. A task id outlives a reassignment or an old notification, and a
        refusal naming the step and the official who completed it told a grid worker of another
        county what the case's people were doing. Only on a refusal's path: a candidate or
        holder never pays for the check."""
        if not can_view_case(session, user, case):
            raise PermissionDenied("this task is outside your jurisdiction", zh="该任务不在您的辖区内")

    def _refuse_unless_open(self, session, item: WorkItem, user: User | None = None, case: Case | None = None):
        if item.status != "open":
            if user is not None and item.completed_by_id != user.id:
                self._refuse_outsider(session, user, case)
            who = session.get(User, item.completed_by_id) if item.completed_by_id else None
            detail = f" by {who.display_name}" if who else ""
            status_zh = {"completed": "办理完毕", "cancelled": "取消"}.get(item.status, item.status)
            raise Conflict(f"task '{item.name}' is already {item.status}{detail}; refresh your inbox",
                           zh=f"任务“{item.name}”已{status_zh}" + (f"（{who.display_name}）" if who else "")
                              + "；请刷新收件箱")

    def _refuse_unless_may_work(self, session, user: User, item: WorkItem, case: Case) -> None:
        """The assignee may work a task; so may any candidate while nobody has claimed it.
        A candidate who lost the race to claim gets a Conflict, anyone else PermissionDenied
        (without the task's name if they may not see the case)."""
        if item.assignee_id == user.id:
            return
        candidate = self._is_candidate(session, user, item)
        if not candidate:
            self._refuse_outsider(session, user, case)
        if item.assignee_id is not None:
            holder = session.get(User, item.assignee_id)
            if candidate:
                raise Conflict(f"task '{item.name}' was claimed by {holder.display_name}",
                               zh=f"任务“{item.name}”已被{holder.display_name}认领")
            raise PermissionDenied(f"task '{item.name}' is not yours to work", zh=f"任务“{item.name}”不由您办理")
        if not candidate:
            raise PermissionDenied(f"task '{item.name}' is not in your inbox",
                                   zh=f"任务“{item.name}”不在您的收件箱中")

    def claim(self, task_id: str, actor) -> WorkItem:
        return self._commit_guarded(self._claim, task_id, actor)

    def _open_item_for(self, session, task_id, actor) -> tuple[WorkItem, Case, User]:
        """The open work item (its case locked) and the acting official."""
        # the lock query also reads the org generation the user lookup is checked against
        item, case = self._locked_item(session, task_id)
        user = self._user(session, actor)
        self._refuse_unless_open(session, item, user, case)
        return item, case, user

    def _hand_over(self, session, item: WorkItem, case: Case, actor: User | None, holder: User | None,
                   event_type: str, data: dict | None = None):
        """The task to `holder` (None: back to its group), audited as `event_type` by `actor`
        (claim and unclaim: the holder themself; 改派: a dispatcher; a deactivated
        account's release: the official it leaves). The moment is the case's `updated_at`."""
        now = clock.now()
        item.assignee_id, item.claimed_at = (holder.id, now) if holder else (None, None)
        case.updated_at = now
        self._audit(session, case, event_type, actor, now, item=item, data=data)
        return item

    def _claim(self, session, task_id, actor):
        item, case, user = self._open_item_for(session, task_id, actor)
        if item.assignee_id == user.id:
            return item
        self._refuse_unless_may_work(session, user, item, case)
        return self._hand_over(session, item, case, user, user, "task_claimed")

    def unclaim(self, task_id: str, actor) -> WorkItem:
        return self._commit_guarded(self._unclaim, task_id, actor)

    def _unclaim(self, session, task_id, actor):
        item, case, user = self._open_item_for(session, task_id, actor)
        if item.assignee_id != user.id:
            self._refuse_outsider(session, user, case)
            raise PermissionDenied(f"only the official who claimed '{item.name}' can release it",
                                   zh=f"只有认领“{item.name}”的人员才能退回")
        if not item.role:
            raise PermissionDenied(zh=f"任务“{item.name}”是指定由您办理的，不能退回；请联系派单员或领导在案件页面改派",
                                   message=f"task '{item.name}' was assigned to you by name; it cannot be released "
                                   "to a group — ask a centre dispatcher or leader to reassign it from the case page")
        return self._hand_over(session, item, case, user, None, "task_unclaimed")

    def release_claims_of(self, username: str, released_by: str) -> list[str]:
        """Give the group tasks a deactivated official had claimed back to their groups, each in
        a transaction of its own, recorded as `task_unclaimed` in the official's name with the
        reason and who released them. Tasks assigned to them by name stay theirs. Returns the
        released tasks' ids."""
        with self.db.read_session() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFound(f"no user '{username}'", zh=f"找不到用户 {username}")
            if user.active:
                raise Conflict(f"{username} is active: officials release their own claims",
                               zh=f"{username} 账号仍在使用，应由本人退回任务")
            ids = list(session.scalars(select(WorkItem.id).where(
                WorkItem.assignee_id == user.id, WorkItem.status == "open", WorkItem.role.is_not(None))
                .order_by(WorkItem.created_at)))
        return [task_id for task_id in ids
                if self._commit_guarded(self._release_claim, task_id, user.id, released_by)]

    def _release_claim(self, session, task_id: str, user_id: int, released_by: str) -> bool:
        item, case = self._locked_item(session, task_id)
        if item.status != "open" or item.assignee_id != user_id or not item.role:
            return False   # finished, released or reassigned since it was listed
        self._hand_over(session, item, case, session.get(User, user_id), None, "task_unclaimed",
                        data={"reason": "account deactivated", "released_by": released_by[:64]})
        self.notifier.reassigned(session, case, item, None, "原承办人账号已停用，任务退回组内", case.updated_at,
                                 leaving=user_id)
        return True

    # ------------------------------------------------------------- complete

    def complete_task(self, task_id: str, data: dict, actor) -> CaseView:
        try:
            return self._commit_guarded(self._complete, task_id, data, actor)
        except ProcessError as exc:
            self._process_failed(exc, actor, task_id=task_id)
            raise

    def _process_failed(self, exc: ProcessError, actor, process_key: str | None = None,
                        task_id: str | None = None) -> None:
        """A process that fails on an official's step changed nothing (its transaction rolled
        back), and the official can do nothing about it but try again: the admins and
        designers hear of it, as of a timer that keeps failing. Logged, and each of them gets
        an `incident` notice (not a second one while the same is unread, however many times
        officials meet it). Recording it never hides the official's own error."""
        try:
            with self.db.unit_of_work() as session:
                item = session.get(WorkItem, str(task_id)) if task_id else None
                if item is not None:
                    case = session.get(Case, item.case_id)
                    where, subject = f"{case.business_key} {item.name}", PROCESS_FAILED.format(step=item.name)
                else:
                    case = None
                    where = f"{process_key or '?'} (start)"
                    subject = PROCESS_FAILED_AT_START.format(process=process_key or "?")
                log.error("process failed on %s's step %s: %s", getattr(actor, "username", actor), where, exc.message)
                self.notifier.process_failed(session, subject, exc.message, case, clock.now())
        except Exception:  # noqa: BLE001 -- the official still gets the process error, which matters more
            log.exception("could not record the failed step of %s", process_key or task_id)

    def _complete(self, session, task_id, data, actor):
        ahead: list[_RunAhead] = []
        # the lock query also reads the org generation the user lookup is checked against;
        # while PostgreSQL answers it, the case's workflow kept in memory runs ahead
        item, case = self._locked_item(session, task_id, with_state=True,
                                       while_waiting=lambda: ahead.append(self._run_ahead(task_id, data)))
        user = self._user(session, actor)
        if is_read_only(user):  # even a task data names them for: auditors only read
            raise PermissionDenied("auditors read cases; they cannot work tasks",
                                   zh="督查人员只能查看案件，不能办理任务")
        self._refuse_unless_open(session, item, user, case)
        self._refuse_unless_may_work(session, user, item, case)
        guess = self._run_ahead_holds(session, case, item, ahead[0] if ahead else None)
        clean = guess.clean if guess is not None else self._validate_form(item.form_key, data)
        self._check_people(session, item.form_key, clean, case.grid_path)
        self._check_earlier_cases(session, item.form_key, clean, user)

        parsed = self.specs.for_case(session, case)
        now = clock.now()
        if guess is not None:
            workflow, due_from = guess.workflow, guess.due_from   # the task has run on it already
            met = guess.met
        else:
            workflow = self._load(session, case, parsed, for_write=True)
            # cycle turns that fell due while no worker ran fire first, as the worker fires them
            due_from = self._fire_as_due(workflow, case)
            task = find_task(workflow, item.id)
            if task is None or not task.has_state(TaskState.READY):
                raise Conflict(f"task '{item.name}' is no longer waiting; refresh the case",
                               zh=f"任务“{item.name}”已不在待办状态；请刷新案件")
            self._check_order(item.form_key, clean, task.data)
            met = None if due_from is None else (collect_finished_steps(workflow), _ready_user_tasks(workflow))
        # what the turns did is recorded as the worker records it, before the official's step
        turns = None if met is None else self._record_turns(session, case, parsed, item, *met, now, due_from)
        self._claim_attachments(session, user, case, item.form_key, clean, item)
        if guess is None:
            task.data.update(clean)
            try:
                task.run()
            except SpiffWorkflowException as exc:
                detail = describe_process_error(exc)
                raise ProcessError(f"the process failed after '{item.name}': {detail}",
                                   zh=f"提交“{item.name}”后流程运行出错，未做任何更改；请联系流程设计员（{detail}）") from None
            self._run(workflow, case)
        item.status, item.completed_at, item.completed_by_id = "completed", now, user.id
        if item.assignee_id is None:
            item.assignee_id = user.id
        open_items = self._after_transition(session, case, workflow, parsed, user, now, completed={item.id: clean},
                                            due_from=due_from, turns=turns)
        return CaseView(case, open_items)

    def _run_ahead(self, task_id, data) -> "_RunAhead | None":
        """The completion worked on the case's workflow kept in memory (if any) before the
        locked read says whether that workflow is still the stored state and whether the
        official may work the task: nothing here is seen or kept unless
        `_run_ahead_holds` says so afterwards, and any failure (a refused form, a process
        error) just leaves the completion to the usual path, which reports it."""
        taken = self.live.take_for_task(str(task_id))
        if taken is None:
            return None
        case_id, version_id, text, workflow, form_key = taken
        try:
            due_from = self._fire_as_due(workflow, None)   # as the usual path does (`_complete`)
            task = find_task(workflow, str(task_id))
            if task is None or not task.has_state(TaskState.READY):
                return None
            # what the turns did, as the usual path records it before the task runs: their steps
            # and the user tasks ready after them (each task's data as it was then)
            met = None if due_from is None else (collect_finished_steps(workflow), {
                tid: _ReadyTask(t.task_spec, dict(t.data)) for tid, t in _ready_user_tasks(workflow).items()})
            clean = self._validate_form(form_key, data, context=task.data)
            task.data.update(clean)
            task.run()
            run_engine(workflow)
        except Exception:  # noqa: BLE001 -- the usual path does it again and reports it
            return None
        return _RunAhead(case_id, version_id, text, form_key, clean, workflow, due_from, met)

    def _run_ahead_holds(self, session, case: Case, item: WorkItem, guess: "_RunAhead | None"):
        """`guess` if it worked on exactly the stored state of this case (its process version,
        its state text) and the same form, else None (its workflow is dropped)."""
        rows = session.info.get(STATE_ROWS, {})
        row = rows.get(case.id)
        holds = (guess is not None and row is not None and guess.case_id == case.id
                 and guess.form_key == item.form_key
                 and self.live.confirm(guess.version_id, guess.text, case.process_version_id, row.state))
        if not holds:
            return None   # `_load` restores the stored state (and counts the miss)
        del rows[case.id]
        guess.workflow._gf_state_row = row   # the save reuses it (`_load`)
        return guess

    # --------------------------------------------------------------- timers

    def fire_timers(self, case_ref) -> CaseView:
        """Fire whatever timers of the case are due by the clock, run the engine, save.
        The timer worker calls this for each case whose `next_timer_at` has passed."""
        return self._commit_guarded(self._fire_timers, case_ref)

    def _fire_timers(self, session, case_ref):
        case = self._case(session, case_ref)
        case = session.scalar(select(Case).where(Case.id == case.id).with_for_update())
        if case.status != "open":
            return CaseView(case, [])
        return self.fire_loaded_case(session, case)

    def prefetch_for_firing(self, session, cases: list[Case]) -> None:
        """Load the states and open work items of many locked cases in two queries, for a
        batch of `fire_loaded_case` calls in one transaction (held in Session.info: the
        session's identity map alone is weak)."""
        session.info[MANY_CASES] = True
        ids = [c.id for c in cases]
        self.org.attach_current(session)  # lane lookups shared with earlier batches
        states = list(session.scalars(select(CaseState).where(CaseState.case_id.in_(ids))))
        session.info.setdefault(STATE_ROWS, {}).update((row.case_id, row) for row in states)
        open_items: dict[int, dict[str, WorkItem]] = {i: {} for i in ids}
        for item in session.scalars(select(WorkItem).where(WorkItem.case_id.in_(ids), WorkItem.status == "open")):
            open_items[item.case_id][item.id] = item
        session.info[PREFETCHED_OPEN_ITEMS] = open_items

    def fire_loaded_case(self, session, case: Case) -> CaseView:
        """Within the caller's transaction, with the case row locked: fire its due timers."""
        parsed = self.specs.for_case(session, case)
        workflow = self._load(session, case, parsed, for_write=True)
        due_from = self._fire_as_due(workflow, case)
        self._run(workflow, case, timers_due=True)   # the rest at the real time
        open_items = self._after_transition(session, case, workflow, parsed, None, clock.now(), due_from=due_from)
        return CaseView(case, open_items)

    def _fire_as_due(self, workflow: BpmnWorkflow, case: Case | None) -> dict[str, datetime] | None:
        """Fire the cycle turns that fell due before any other timer of the case did, one at a
        time, oldest first, each as at the moment it fell due; what else is due is left to the
        caller's engine run, at the real time. Every path that meets due timers steps them
        here first: the timer worker (`fire_loaded_case`) and an official's completion, before
        the official's task runs (`_complete`, `_run_ahead`), so a case ends the same whoever
        meets its due timers first. A worker that was down fires a backlog late: fired at the
        real time, a leader case's progress reports (R52/P{n}D) of two missed cycles were both
        due n days after the late firing, and each one's missed-report timer counted from then,
        the reporting period stretched by the downtime. A cycle is a schedule; a deadline is not
        stepped: what it starts (an escalation to the county) is the next holder's from when
        they got it, the real time. Returns None when no turn was due (nothing was done), else
        {task id: the moment it was due} for the user tasks the turns created, their due dates'
        start. `case` only names the case in an error."""
        now, due_from, seen = clock.now(), {}, None
        timers = _timers(workflow)   # read once per turn: the turn's due list and the guard below
        for _ in range(MAX_TIMER_STEPS):
            due = [(moment, kind) for moment, kind in timers if moment < now]
            if not due:
                break   # a completion's usual case: nothing more to do
            moment = min(m for m, _kind in due)
            if any(kind != CYCLE_TIMER for m, kind in due if m <= moment):
                break   # another timer is as due: the rest fires at the real time, as it always did
            if seen is None:
                seen = {t.id for t in tasks_in_state(workflow, TaskState.READY)}
            # SpiffWorkflow fires a timer once its time is strictly past
            with clock.timers_at(moment + timedelta(microseconds=1)):
                self._run(workflow, case, timers_due=True)
            for task in tasks_in_state(workflow, TaskState.READY):
                if task.id not in seen:
                    seen.add(task.id)
                    due_from[str(task.id)] = moment
            timers = _timers(workflow)
            if min((m for m, _kind in timers), default=None) == moment:
                break   # nothing fired at that moment (only if SpiffWorkflow changed): never loop
        return due_from if seen is not None else None

    def _commit_guarded(self, fn, *args):
        """One transaction; a lost race on the case's version is a Conflict, never a lost update.
        Once committed, the workflows it saved stay in memory for the cases' next steps."""
        try:
            with self.db.unit_of_work() as session, deferred_inserts(session):
                # audit and notification rows go in after one flush of the ORM's writes
                saved = session.info.setdefault(LIVE_AFTER_COMMIT, [])
                result = fn(session, *args)
                if isinstance(result, CaseView) and result.org is None:
                    result.org = view_of(session)
        except StaleDataError:
            raise Conflict("someone else changed this case at the same moment; refresh and try again",
                           zh="其他人刚刚同时修改了此案件；请刷新后重试") from None
        for case_id, version_id, text, workflow, form_keys in saved:
            workflow._gf_state_row = None  # that session is gone; the next transition reads its own row
            self.live.put(case_id, version_id, text, workflow, form_keys)
        return result

    # ------------------------------------------------------ state handling

    def _load(self, session, case: Case, parsed: ParsedProcess, for_write: bool = False) -> BpmnWorkflow:
        """The case's workflow. A transition (`for_write`) may reuse the one its previous
        transition left in memory when the stored state is still exactly what it saved."""
        row = session.info.get(STATE_ROWS, {}).pop(case.id, None) or session.get(CaseState, case.id)
        if row is None:
            raise NotFound(f"case {case.business_key} has no state", zh=f"案件 {case.business_key} 缺少流程状态")
        workflow = self.live.take(case.id, case.process_version_id, row.state) if for_write else None
        if workflow is None:
            spec, subprocess_specs = self._specs_for_one_case(parsed)
            workflow = self.serializer.loads(row.state, spec, subprocess_specs, row.serializer_version)
            if parsed.mutable:
                restore_trigger_connections(workflow)
        # keep the row alive in the session's (weak) identity map: the save reuses it
        workflow._gf_state_row = row
        return workflow

    @staticmethod
    def _specs_for_one_case(parsed: ParsedProcess):
        """The cached specs, or a private copy when SpiffWorkflow would change them
        while the case runs (signal/message event subprocesses)."""
        if parsed.mutable:
            return private_specs(parsed.spec, parsed.subprocess_specs)
        return parsed.spec, parsed.subprocess_specs

    @staticmethod
    def _run(workflow: BpmnWorkflow, case: Case | None, timers_due: bool = False, label: tuple[str, str] | None = None):
        try:
            run_engine(workflow, timers_due=timers_due)
        except SpiffWorkflowException as exc:
            detail = describe_process_error(exc)
            en, zh = label or ((f"case {case.business_key}", f"案件 {case.business_key}") if case is not None
                               else ("the case", "案件"))
            raise ProcessError(f"{en}: the process failed: {detail}",
                               zh=f"{zh} 流程运行出错，未做任何更改；请联系流程设计员（{detail}）") from None

    def _after_transition(self, session, case: Case, workflow: BpmnWorkflow, parsed: ParsedProcess,
                          user: User | None, now: datetime, completed: dict | None = None,
                          due_from: dict[str, datetime] | None = None, turns: "_Turns | None" = None):
        """Record the transition's steps, mirror its ready user tasks as work items, save.
        `turns`: what the cycle turns an official's step met did, recorded before the step
        (`_record_turns`): their events go first, and they are told as this transition's own."""
        new_steps = collect_finished_steps(workflow)
        events = self._step_events(case, new_steps, user, now, completed or {})
        prune_history(workflow)
        open_items = self._sync_work_items(session, case, _ready_user_tasks(workflow), parsed, now, events,
                                           due_from or {})
        steps = new_steps
        if turns is not None:
            steps, events = turns.steps + new_steps, turns.events + events
        self.notifier.after_transition(session, case, parsed, steps, events, open_items, now)

        data = self._case_data(workflow)
        # reports never hold a personal value: ID and phone numbers are masked before they are
        # copied into the summary (docs/audit.md, "stored once")
        personal = personal_fields(self.forms)
        case.summary = _summary({k: (mask_value(v) if k in personal else v) for k, v in data.items()})
        case.colour = data.get("colour") if isinstance(data.get("colour"), str) else case.colour
        case.category = data.get("category") if isinstance(data.get("category"), str) else case.category
        if not case.title:
            case.title = _title(data)
        case.updated_at = now
        case.next_timer_at = _next_timer(workflow)
        if workflow.is_completed() and case.status == "open":
            case.status, case.closed_at = "completed", now
            events.append(audit.Event(case_id=case.id, event_type="case_closed", at=now, data={}))
        audit.append(session, case, events)
        text, version = self.serializer.dumps(workflow), self.serializer.version
        state = getattr(workflow, "_gf_state_row", None) or session.get(CaseState, case.id)
        state.state, state.serializer_version = text, version
        if MANY_CASES not in session.info:
            self.write_transitions(session)  # a lost race surfaces here, inside the guarded transition
        # else the batch's rows go in together at its end
        saved = session.info.get(LIVE_AFTER_COMMIT)
        if saved is not None:
            saved.append((case.id, case.process_version_id, text, workflow,
                          {item.id: item.form_key for item in open_items}))
        return open_items

    @staticmethod
    def write_transitions(session) -> None:
        """Write what the transitions of this transaction changed, by the driver
        (engine/core_writes.py): the changed case, work item and state rows (the cases
        first: a lost race on a version surfaces here), then the new work items and their
        candidates. A batch of timer firings calls this once, at its end. A new case's row
        goes in first (its id is in every other row), then its state row, with its first
        state."""
        insert_new(session, session.info.pop(NEW_CASES, []))
        update_changed_many(session, sorted((row for row in session.dirty if type(row) in _CORE_UPDATED),
                                            key=lambda row: _CORE_UPDATED[type(row)]))
        insert_new(session, session.info.pop(NEW_STATES, []))
        insert_new(session, session.info.pop(NEW_ITEMS, []))
        insert_rows_now(session, WorkItemCandidate.__table__, session.info.pop(NEW_CANDIDATES, []))

    @staticmethod
    def _case_data(workflow: BpmnWorkflow) -> dict:
        if workflow.is_completed():
            return dict(workflow.data)
        ready = tasks_in_tree_order(workflow, TaskState.READY | TaskState.WAITING)
        if len(ready) == 1 and ready[0].workflow is workflow:
            return dict(ready[0].data)
        if ready:
            # A task inside a called process holds only what the call passed in (mediation's
            # fields): the case's own data is its call activity's. Parallel branches each hold
            # a copy: together they are the case's data, the most recent value of a key winning
            # (the tree's order decides between equally recent tasks). A branch already ended
            # (a 督办 branch: the overdue flag, the note) is held by the join that waits for the
            # others, until it fires: read from there, as the join will merge it, the handler
            # of the main task sees the case was flagged and what the supervisor wrote. Like the
            # join, ended branches go first, under the tasks still running: an ended branch
            # holds a copy of the data of when it began, and its older values of the main
            # path's keys must not win over what the main path recorded since.
            held = []
            for i, task in enumerate(ready):
                scoped = _in_case_scope(workflow, task)
                ended = branches_a_join_holds(task) if scoped is task else []
                if ended:
                    held += [(0, when, -i, j, source) for j, (when, source) in enumerate(ended)]
                else:
                    held.append((1, scoped.last_state_change, -i, 0, scoped))
            merged = {}
            for *_order, source in sorted(held, key=lambda five: five[:4]):
                merged.update(source.data)
            return merged
        if workflow.last_task is not None:
            return dict(workflow.last_task.data)
        return dict(workflow.task_tree.data)

    @staticmethod
    def _step_events(case: Case, steps, user: User | None, now: datetime, completed: dict) -> list[audit.Event]:
        """The audit events of the steps a run took: a user task completed (by `user` if it is
        one of `completed`, with what was submitted), any other element passed."""
        events = []
        for step in steps:
            if step.is_user_task and step.state == "COMPLETED":
                events.append(audit.Event(
                    case_id=case.id, work_item_id=step.task_id, event_type="task_completed",
                    actor_id=user.id if user and step.task_id in completed else None, at=now,
                    bpmn_id=step.bpmn_id, bpmn_name=step.bpmn_name, flow_from=step.flow_from,
                    data=completed.get(step.task_id, {})))
            elif step.state == "COMPLETED":
                events.append(audit.Event(
                    case_id=case.id, event_type="step", at=now, bpmn_id=step.bpmn_id,
                    bpmn_name=step.bpmn_name, flow_from=step.flow_from, data={"type": step.spec_type}))
        return events

    def _record_turns(self, session, case: Case, parsed: ParsedProcess, item: WorkItem, steps, ready: dict,
                      now: datetime, due_from: dict[str, datetime]) -> _Turns:
        """Record what the cycle turns an official's step met first did (`_fire_as_due`), before
        the official's task runs, as the timer worker's firing records it (`fire_loaded_case`):
        their steps by nobody, and the user tasks they made ready as work items created by the
        timer at the real time, due from their turns, with their `task_created` events. What the
        official's step then ends is cancelled by it (`task_cancelled`), as when the worker came
        first: the same trail whoever met the turns first. `steps` and `ready`: the turns' steps
        and the user tasks ready after them. The events go into the transition's audit rows first
        (`_after_transition`); the work items stay open for its `_sync_work_items`. Only when a
        turn was due: a completion that meets none does nothing here."""
        events = self._step_events(case, steps, None, now, {})
        # the case's open work items: the official's own (ready still) and the others, read with the lock
        prefetched = session.info.setdefault(PREFETCHED_OPEN_ITEMS, {})
        others = prefetched.get(case.id)
        if others is not None:
            prefetched[case.id] = {**others, item.id: item}
        still_open = self._sync_work_items(session, case, ready, parsed, now, events, due_from)
        # the official's step then syncs with the others, the new ones among them
        prefetched[case.id] = {i.id: i for i in still_open if i.id != item.id}
        return _Turns(steps, events)

    def _sync_work_items(self, session, case: Case, ready: dict, parsed: ParsedProcess, now, events,
                         due_from: dict[str, datetime]):
        """Mirror `ready` (`_ready_user_tasks`) as the case's open work items: cancel the items of
        tasks no longer ready, create those of new ones, each with its audit events."""
        prefetched = session.info.get(PREFETCHED_OPEN_ITEMS)
        if prefetched is not None and case.id in prefetched:
            open_items = prefetched.pop(case.id)
        else:
            open_items = {i.id: i for i in session.scalars(_hot_statements()["open_items"], {"case_id": case.id})}
        for item_id, item in open_items.items():
            if item_id not in ready:
                item.status, item.completed_at = "cancelled", now
                events.append(audit.Event(case_id=case.id, work_item_id=item_id, event_type="task_cancelled",
                                         at=now, bpmn_id=item.spec_id, bpmn_name=item.name, data={}))
        still_open = [item for item_id, item in open_items.items() if item_id in ready]
        new = [tid for tid in ready if tid not in open_items]
        if not new:
            return still_open
        # one resolver per transaction: a batch of timer firings shares its tree lookups
        resolver = session.info.get("gf_lane_resolver") or session.info.setdefault("gf_lane_resolver",
                                                                                   LaneResolver(session))
        created, candidates = session.info.setdefault(NEW_ITEMS, []), session.info.setdefault(NEW_CANDIDATES, [])
        for tid in new:
            task = ready[tid]
            info = user_task_info(task.task_spec, parsed.camunda_attrs)
            lane = info.effective_lane
            cands = resolver.resolve(lane, case.grid_path, task.data, info.assignee, info.candidate_users)
            # a task a late timer created is due as if the timer had fired on time (_fire_as_due)
            due = _due_at(info.due, task.data, due_from.get(tid, now))
            item = new_row_object(
                WorkItem, id=tid, case_id=case.id, process_key=case.process_key, spec_id=info.bpmn_id, name=info.name,
                lane=stored_lane(lane), role=cands.role, candidate_node_id=cands.node_id, grid_path=case.grid_path,
                assignee_id=cands.assignee_id, unresolved=cands.unresolved, form_key=info.form_key,
                status="open", created_at=now, due_at=due, sort_due=due or NO_DUE_DATE,
                claimed_at=now if cands.assignee_id else None)
            still_open.append(item)
            created.append(item)
            candidates += [{"work_item_id": tid, "user_id": uid} for uid in cands.user_ids]
            events.append(audit.Event(
                case_id=case.id, work_item_id=tid, event_type="task_created", at=now, bpmn_id=info.bpmn_id,
                bpmn_name=info.name, data={"role": cands.role, "node_id": cands.node_id,
                                           "assignee_id": cands.assignee_id, "candidates": cands.user_ids}))
            if cands.unresolved:
                events.append(audit.Event(
                    case_id=case.id, work_item_id=tid, event_type="lane_unresolved", at=now, bpmn_id=info.bpmn_id,
                    bpmn_name=info.name, data={"lane": lane, "reason": cands.reason,
                                               "fallback_role": cands.role, "fallback_node_id": cands.node_id}))
        return still_open

    @staticmethod
    def _audit(session, case: Case, event_type: str, user: User | None, now, item: WorkItem | None = None,
               data: dict | None = None):
        audit.record(session, case, event_type, now, actor_id=user.id if user else None,
                     work_item_id=item.id if item else None, bpmn_id=item.spec_id if item else None,
                     bpmn_name=item.name if item else None, data=data)

    @staticmethod
    def _open_items(session, case_id: int) -> list[WorkItem]:
        return list(session.scalars(select(WorkItem).where(WorkItem.case_id == case_id, WorkItem.status == "open")
                                    .order_by(WorkItem.created_at)))

    # ----------------------------------------------------------- read side

    def get_case(self, case_ref) -> CaseView:
        with self.db.read_session() as session:
            case = self._case(session, case_ref)
            return CaseView(case, self._open_items(session, case.id))

    @staticmethod
    def _case(session, case_ref) -> Case:
        if not storable_ref(case_ref):
            raise NotFound("no such case", zh="找不到该案件")
        if isinstance(case_ref, int):
            case = session.get(Case, case_ref)
        else:
            # case numbers are capitals and digits (models.BUSINESS_KEY_PREFIX): lx-2026-000123 is LX-…
            case = session.scalar(select(Case).where(Case.business_key == str(case_ref).strip().upper()))
        if case is None:
            raise NotFound(f"no case '{case_ref}'", zh="找不到该案件")
        return case

    def history(self, case_ref) -> list[AuditEvent]:
        with self.db.read_session() as session:
            case = self._case(session, case_ref)
            return list(session.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id)
                                        .order_by(AuditEvent.id)))

    def path(self, case_ref) -> list[tuple[str | None, str]]:
        """(came from, element) for every element the case passed through, in order:
        what the diagram highlights. Read from SQL, never from the live state."""
        return [(e.flow_from, e.bpmn_id) for e in self.history(case_ref)
                if e.event_type in ("step", "task_completed") and e.bpmn_id]

    def case_data(self, case_ref) -> dict:
        with self.db.read_session() as session:
            case = self._case(session, case_ref)
            parsed = self.specs.get(session.get(ProcessVersion, case.process_version_id))
            return self._case_data(self._load(session, case, parsed))

    # ---------------------------------------------------------- attachments

    def _claim_attachments(self, session, user: User, case: Case, form_key, clean: dict, item):
        """Link the uploads a submission names (file fields) to the case."""
        form = self.forms.get(form_key) if form_key else None
        if form is None:
            return
        for f in form.input_fields:
            if f.type != "file" or not clean.get(f.name):
                continue
            for attachment_id in clean[f.name]:
                att = session.get(Attachment, str(attachment_id))
                ok = att is not None and (att.case_id == case.id or
                                          (att.case_id is None and att.uploaded_by_id == user.id))
                if not ok:
                    raise InvalidInput("an attached file was not found; upload it again", zh="找不到所附文件，请重新上传",
                                       fields={f.name: [f"unknown attachment {attachment_id}"]})
                att.case_id = case.id
                att.work_item_id = item.id if item else None

    def upload_attachment(self, actor, filename: str, data: bytes, case_ref=None) -> Attachment:
        """Store an upload. With a case: the actor must be able to work it (an open task
        of theirs, or their own open case). Without: a pending upload for a form."""
        from .attachments import clean_filename
        content_type = self.attachments.check(filename, data)
        with self.db.unit_of_work() as session:
            user = self._user(session, actor)
            if is_read_only(user):
                raise PermissionDenied("auditors cannot add files to cases", zh="督查人员不能向案件添加文件")
            case = None
            if case_ref is not None:
                case = self._case(session, case_ref)
                if not can_view_case(session, user, case):
                    raise PermissionDenied(f"case {case.business_key} is outside your jurisdiction",
                                           zh=f"案件 {case.business_key} 不在您的辖区内")
                if not self._may_contribute(session, user, case):
                    raise PermissionDenied(f"you have no open task in case {case.business_key}",
                                           zh=f"您在案件 {case.business_key} 中没有待办任务，不能上传文件")
            attachment_id, storage_path, digest = self.attachments.write(data)
            att = Attachment(id=attachment_id, case_id=case.id if case else None, filename=clean_filename(filename),
                             content_type=content_type, size=len(data), sha256=digest, storage_path=storage_path,
                             uploaded_by_id=user.id, uploaded_at=clock.now())
            session.add(att)
            if case is not None:
                self._audit(session, case, "attachment_added", user, att.uploaded_at,
                            data={"attachment": attachment_id, "filename": att.filename, "size": att.size})
            return att

    def purge_unclaimed_uploads(self, now: datetime | None = None, batch: int = 1000) -> int:
        """Remove uploads no submitted form took within UNCLAIMED_UPLOAD_DAYS: the photos of a
        report abandoned half-way, or of a report sent twice (the second start is refused after
        its files were stored). They never joined a case, so no case, trace or audit row names
        them. Guarded by `case_id IS NULL` in the DELETE itself: a form submitted meanwhile keeps
        its files. The files go after the commit, so no row ever points to a missing file."""
        cutoff = (now or clock.now()) - timedelta(days=UNCLAIMED_UPLOAD_DAYS)
        with self.db.unit_of_work() as session:
            stale = select(Attachment.id).where(Attachment.case_id.is_(None), Attachment.uploaded_at < cutoff) \
                .limit(batch)
            paths = list(session.scalars(delete(Attachment).where(
                Attachment.id.in_(list(session.scalars(stale))), Attachment.case_id.is_(None))
                .returning(Attachment.storage_path)))
        for storage_path in paths:
            self.attachments.remove(storage_path)
        return len(paths)

    def _may_contribute(self, session, user: User, case: Case) -> bool:
        if case.status == "open" and case.created_by_id == user.id:
            return True
        for item in session.scalars(select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.status == "open")):
            if item.assignee_id == user.id or (item.assignee_id is None and self._is_candidate(session, user, item)):
                return True
        return False

    def open_attachment(self, actor, attachment_id: str):
        """(metadata, path on disk) if the actor may see the attachment's case."""
        with self.db.read_session() as session:
            user = self._user(session, actor)
            att = session.get(Attachment, attachment_id) if storable_ref(attachment_id) else None
            if att is None:
                raise NotFound("no such file", zh="找不到该文件")
            if att.case_id is None:
                if att.uploaded_by_id != user.id:
                    raise NotFound("no such file", zh="找不到该文件")
            elif not can_view_case(session, user, session.get(Case, att.case_id)):
                raise PermissionDenied("this file belongs to a case outside your jurisdiction",
                                       zh="该文件属于您辖区以外的案件")
            return att, self.attachments.path(att.storage_path)

    # ------------------------------------------------------ users and reads

    def authenticate(self, username: str, password: str, via: str = "web", address: str | None = None) -> User | None:
        """The account whose name and password these are, or None. Every attempt is recorded;
        a name with too many recent failures is refused without looking at the password
        (`LoginLocked`: engine/login_guard.py). `via`: web, api or cli; `address`: the client's."""
        if not (isinstance(username, str) and storable_ref(username.strip())
                and isinstance(password, str) and storable_ref(password or "x")):
            return None
        name, now, locked = username.strip(), clock.now(), None
        with self.db.unit_of_work() as session:
            account = session.scalar(select(User).where(User.username == name)) if len(name) <= 64 else None
            until = login_guard.locked_until(session, login_guard.login_name(name), now)
            if until is not None:
                login_guard.record(session, name, login_guard.REFUSED_LOCKED, now,
                                   user_id=account.id if account else None, via=via, address=address)
                locked, user = login_guard.LoginLocked(until, now), None
            else:
                if account is None:
                    check_password_of_nobody(password or "")
                    user, note = None, "no such account"
                elif not check_password(account.password_hash, password or ""):
                    user, note = None, None
                elif not account.active:
                    user, note = None, "account deactivated"
                else:
                    user, note = account, None
                login_guard.record(session, name, login_guard.SUCCEEDED if user else login_guard.FAILED, now,
                                   user_id=account.id if account else None, via=via, address=address, note=note)
        if locked is not None:
            raise locked   # after the commit: the refusal is recorded
        return user

    def change_password(self, actor, current: str, new: str, repeat: str, address: str | None = None,
                        via: str = "web") -> str:
        """An official chooses their own password. The current one must be given: a wrong one
        counts as a failed login (the same lock applies). The new one must meet the policy
        (`password_problems`), match its repetition and differ from the current one. Recorded
        in the organisation's change log (never the value); `gridflow load-org` then keeps it.
        Refusals are `InvalidInput` with the field messages in both languages. Returns the new
        password's stamp (`passwords.password_stamp`), which the sessions opened with it carry."""
        values = {"current": current, "new": new, "repeat": repeat}
        unusable = [k for k, v in values.items() if not (isinstance(v, str) and storable_ref(v or "x"))]
        if unusable:
            raise _password_refused({k: [("Not a usable value.", "内容无效。")] for k in unusable})
        now, locked, wrong = clock.now(), None, False
        with self.db.unit_of_work() as session:
            user = session.get(User, self._user(session, actor).id)
            until = login_guard.locked_until(session, user.username, now)
            if until is not None:
                login_guard.record(session, user.username, login_guard.REFUSED_LOCKED, now, user_id=user.id,
                                   via=via, address=address, note="password change")
                locked = login_guard.LoginLocked(until, now)
            elif not check_password(user.password_hash, current):
                login_guard.record(session, user.username, login_guard.FAILED, now, user_id=user.id,
                                   via=via, address=address, note="password change: wrong current password")
                wrong = True
            else:
                problems = {"new": password_problems(new, user.username)}
                if new == current:
                    problems["new"].append(("Choose one that differs from the current password.", "新密码不能与当前密码相同。"))
                if repeat != new:
                    problems["repeat"] = [("The two new passwords differ.", "两次输入的新密码不一致。")]
                problems = {k: v for k, v in problems.items() if v}
                if problems:
                    raise _password_refused(problems)
                user.password_hash, user.password_changed_at = hash_password(new), now
                source = "/api/v1/auth/password" if via == "api" else "/account/password"   # where it was changed
                record_change(session, user.username, source, "user_changed", user.username,
                              {"password": "changed by its owner"}, [ra.node.path for ra in user.roles])
        if locked is not None:
            raise locked
        if wrong:
            raise _password_refused({"current": [("Wrong password.", "当前密码不正确。")]})
        return password_stamp(user.password_hash)

    def unlock_login(self, username: str, unlocked_by: str, via: str = "cli") -> bool:
        """Lift the lock on a name (`gridflow unlock-login`, or an administrator on the login
        record: `LoginRecords.unlock` checks who may): its failures count afresh from now.
        Recorded; False if the name was not locked."""
        now = clock.now()
        with self.db.unit_of_work() as session:
            name = login_guard.login_name(username)
            if login_guard.locked_until(session, name, now) is None:
                return False
            account_id = session.scalar(select(User.id).where(User.username == name))
            login_guard.record(session, name, login_guard.UNLOCKED, now, user_id=account_id, via=via,
                               note=f"by {unlocked_by}")
            return True

    def get_user(self, ref) -> User | None:
        with self.db.read_session() as session:
            try:
                user = self._user(session, ref)
            except PermissionDenied:
                return None
            for ra in user.roles:
                _ = ra.node.name
            return user

    def processes(self) -> list[ProcessSummary]:
        """The latest version of every deployed process with its user tasks (for filters, pickers)."""
        with self.db.read_session() as session:
            # its files are read only if its specs were not parsed yet
            return [ProcessSummary(key=v.process_key, name=v.name, version=v.version, version_id=v.id,
                                   user_tasks=self._user_tasks(v)) for v in latest_versions(session)]

    def same_named_tasks(self, ref: str, process_key: str | None = None) -> list[str]:
        """The BPMN ids of the user tasks that `ref` names (a task's id or its name) in the
        deployed processes (of `process_key`, if given): a filter's one choice for what officials
        see as one task (a called mediation's 制作并签署调解协议书 has an id in each branch)."""
        tasks = [pair for p in self.processes() if process_key in (None, p.key) for pair in p.user_tasks]
        names = {name for spec_id, name in tasks if ref in (spec_id, name)}
        return sorted({ref} | {spec_id for spec_id, name in tasks if name in names})

    def _user_tasks(self, version: ProcessVersion) -> list[tuple[str, str]]:
        parsed = self.specs.get(version)
        if parsed.user_tasks is None:
            tasks = {}
            for _spec, task_spec in all_specs(parsed):
                if is_user_task(task_spec):
                    info = user_task_info(task_spec, parsed.camunda_attrs)
                    tasks.setdefault(info.bpmn_id, info.name)
            parsed.user_tasks = sorted(tasks.items())
        return parsed.user_tasks

    def startable(self, actor) -> list[StartOption]:
        """Processes the actor may start, each with the grids they may start it in."""
        with self.db.read_session() as session:
            user = self._user(session, actor)
            if is_read_only(user):
                return []
            options = []
            for version in latest_versions(session):
                key = version.process_key
                allowed = {r.strip() for r in (version.properties.get("startRoles") or "").split(",") if r.strip()}
                if not allowed:
                    continue
                paths = [start_node_path(ra) for ra in user.roles if ra.role in allowed]
                if not paths:
                    continue
                grids = session.scalars(select(JurisdictionNode).where(
                    JurisdictionNode.level == "grid",
                    or_(*[JurisdictionNode.path.like(p + "%") for p in paths])).order_by(JurisdictionNode.path)).all()
                if grids:
                    options.append(StartOption(process_key=key, name=version.name,
                                               start_form=version.properties.get("startForm"),
                                               grids=[(g.code, g.name, g.id) for g in grids]))
            return options

    def view_case(self, actor, case_ref) -> CaseDetail:
        """Everything the case page shows, if the actor may see the case."""
        with self.db.read_session() as session:
            user = self._user(session, actor)
            case = self._case(session, case_ref)
            if not can_view_case(session, user, case):
                # not named: a case asked for by its number would tell another county's case number
                raise PermissionDenied("this case is outside your jurisdiction", zh="该案件不在您的辖区内")
            version = session.get(ProcessVersion, case.process_version_id)
            parsed = self.specs.get(version)
            workflow = self._load(session, case, parsed)
            data = self._case_data(workflow)
            items = self._open_items(session, case.id)
            # where the case waits without a task (a signal, message or timer) is marked too
            active = [i.spec_id for i in items]
            active += [w for w in waiting_event_ids(workflow) if w not in active]
            events = list(session.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id)
                                          .order_by(AuditEvent.id)))
            user_ids = {e.actor_id for e in events} | {i.assignee_id for i in items} | {case.created_by_id}
            names = {u.id: u.display_name for u in session.scalars(
                select(User).where(User.id.in_([u for u in user_ids if u])))}
            # the units of open tasks, and of every task the history says was created (closed ones too)
            node_ids = {i.candidate_node_id for i in items} | {case.grid_id} | {
                e.data.get("node_id") for e in events if e.event_type == "task_created" and isinstance(e.data, dict)
                and isinstance(e.data.get("node_id"), int)}
            node_rows = {n.id: n for n in session.scalars(
                select(JurisdictionNode).where(JurisdictionNode.id.in_([n for n in node_ids if n])))}
            nodes = {nid: n.name for nid, n in node_rows.items()}
            path = [(e.flow_from, e.bpmn_id) for e in events
                    if e.event_type in ("step", "task_completed") and e.bpmn_id]
            attachments = list(session.scalars(select(Attachment).where(Attachment.case_id == case.id)
                                               .order_by(Attachment.uploaded_at)))
            main_file = process_file(version.files, case.process_key)
            return CaseDetail(
                case=case, version=version, data=data, open_items=items, events=events, user_names=names,
                node_names=nodes, grid_code=node_rows[case.grid_id].code, attachments=attachments,
                diagram_xml=version.files.get(main_file) if main_file else None,
                highlights=highlights(version.files, path, active, process_key=case.process_key),
                may_contribute=self._may_contribute(session, user, case) and not is_read_only(user))

    def task_detail(self, actor, task_id: str) -> TaskDetail:
        with self.db.read_session() as session:
            user = self._user(session, actor)
            item = session.get(WorkItem, task_id) if storable_ref(task_id) else None
            if item is None:
                raise NotFound(f"no task '{str(task_id)[:40]}'", zh="找不到该任务")
            case = session.get(Case, item.case_id)
            may_work = item.status == "open" and (
                item.assignee_id == user.id or (item.assignee_id is None and self._is_candidate(session, user, item)))
            if not may_work and not can_view_case(session, user, case):
                # not named: the step a case of another place is at is not theirs to know
                raise PermissionDenied("this task is outside your jurisdiction", zh="该任务不在您的辖区内")
            parsed = self.specs.get(session.get(ProcessVersion, case.process_version_id))
            workflow = self._load(session, case, parsed)
            # an open task's form reads its own data (a task of a called process: what the
            # call passed in and what the called process set), a finished one the case's
            task = find_task(workflow, item.id) if item.status == "open" else None
            data = dict(task.data) if task is not None else self._case_data(workflow)
            form = self.forms.get(item.form_key) if item.form_key else None
            places = self._department_places(session, item, form) if may_work else {}
            return TaskDetail(item=item, case=case, form=form, case_data=data, may_work=may_work,
                              department_places=places)

    @staticmethod
    def _department_places(session: Session, item: WorkItem, form) -> dict:
        """{department type: (the unit a task for it would go to, whether that unit is of the
        dispatcher's own place)} for the `department`/`departments` choices of a dispatch form,
        resolved as the department task's lane (`<level>.department_handler`) will be: a town
        without 住建 sends 住建 to the county's bureau, and the dispatcher is told so before
        submitting instead of finding it out from where the task went. A type nobody handles
        at or above the place maps to (None, False): the task would go to the dispatchers."""
        fields = department_fields(form)
        ref = parse_lane(item.lane) if fields and item.lane else None
        if ref is None or not ref.level:
            return {}
        resolver = LaneResolver(session)
        chain = resolver.ancestors(item.grid_path)
        own = next((n for n in chain if n.level == ref.level), None)
        if own is None:
            return {}
        places = {}
        for dept_type in dict.fromkeys(v for f in fields for v in f.choice_values if isinstance(v, str)):
            found = resolver.resolve(f"{ref.level}.department_handler", item.grid_path, {"department": dept_type})
            node = session.get(JurisdictionNode, found.node_id) if found.node_id and not found.unresolved else None
            places[dept_type] = (node.name, node.parent_id == own.id) if node is not None else (None, False)
        return places


@dataclass
class _RunAhead:
    """A completion worked ahead on a kept workflow (`WorkflowService._run_ahead`)."""
    case_id: int
    version_id: int
    text: str
    form_key: str | None
    clean: dict
    workflow: BpmnWorkflow
    due_from: dict[str, datetime] | None   # the tasks its stepped cycle turns created (`_fire_as_due`)
    met: tuple[list, dict] | None   # those turns' steps and the user tasks ready after them (`_record_turns`)


class _ReadyTask(NamedTuple):
    """A ready user task as `_sync_work_items` reads it, kept from before a later run."""
    task_spec: object
    data: dict


@dataclass
class _Turns:
    """What the cycle turns an official's step met did, recorded before the step (`_record_turns`)."""
    steps: list
    events: list


@dataclass
class ProcessSummary:
    key: str
    name: str
    version: int
    version_id: int
    user_tasks: list  # [(bpmn id, name)]


@dataclass
class StartOption:
    process_key: str
    name: str
    start_form: str | None
    grids: list          # (code, name, id) of each grid the actor may start it in


@dataclass
class CaseDetail:
    case: Case
    version: ProcessVersion
    data: dict
    open_items: list
    events: list
    user_names: dict
    node_names: dict
    grid_code: str       # the case's grid, as start forms name grids
    attachments: list
    diagram_xml: str | None
    highlights: dict
    may_contribute: bool


@dataclass
class TaskDetail:
    item: WorkItem
    case: Case
    form: object
    case_data: dict
    may_work: bool
    # a dispatch form's department choices: where each would go (`_department_places`)
    department_places: dict = field(default_factory=dict)


def department_fields(form) -> list:
    """The department choices of a dispatch form (`department`, `departments`), whose places
    `_department_places` resolves and the pages and the API tell (web/department_routing.py)."""
    return [f for f in getattr(form, "input_fields", ()) if f.name in ("department", "departments")
            and f.type in ("choice", "multi_choice")]


def _plain(value) -> str:
    """A name as compared: text with its spaces folded ("钱某 " is 钱某)."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def _works_in_unit(user: User, dept_type: str, ancestors: set) -> bool:
    """Whether the user holds a role at (or under) a department of `dept_type` that belongs to
    one of `ancestors` (the case's grid and the places above it): 住建局 of this county, not
    another county's, nor 城管局."""
    return any(ra.node.dept_type == dept_type and ra.node.parent_id in ancestors for ra in user.roles)


def _form_refused(exc: FormValidationError) -> InvalidInput:
    return InvalidInput("some fields are not filled in correctly", fields=exc.fields,
                        zh="部分内容填写有误，请按提示修改后重新提交", fields_zh=exc.fields_zh)


def _summary(data: dict) -> dict:
    out = {}
    for key, value in data.items():
        if len(out) >= SUMMARY_KEYS_MAX or key.startswith("_"):
            continue
        if isinstance(value, (bool, int, float)) or value is None:
            out[key] = value
        elif isinstance(value, str):
            out[key] = value[:SUMMARY_VALUE_MAX]
    return out


def _ready_user_tasks(workflow: BpmnWorkflow) -> dict:
    """{task id: task} of the ready user tasks, in the tree's order: what the work items mirror
    (new work items and their audit rows follow that order)."""
    return {str(t.id): t for t in tasks_in_tree_order(
        workflow, TaskState.READY, keep=lambda t: t.task_spec.manual and is_user_task(t.task_spec))}


def _in_case_scope(workflow: BpmnWorkflow, task):
    """`task`, or for a task inside a called process (at any depth) the call activity in
    the case's own process that started it. Embedded subprocesses share the case's data."""
    while task.workflow is not workflow:
        caller = workflow.get_task_from_id(task.workflow.parent_task_id)
        if not isinstance(caller.task_spec, CallActivity):
            break
        task = caller
    return task


def _title(data: dict) -> str:
    for key in ("title", "subject", "description"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            return text[:60] + ("…" if len(text) > 60 else "")
    return ""


def _due_at(expression: str | None, data: dict, now: datetime) -> datetime | None:
    """A task's due time from its `dueDate` property: an ISO duration (`P3D`), the name
    of a data field, or an expression over case data (sandboxed) giving a number of days
    or an ISO date/time."""
    if not expression:
        return None
    expression = data_key(expression)
    if expression not in data and expression.upper().startswith("P"):
        try:
            parsed = TimerEventDefinition.parse_iso_duration(expression)
            return now + TimerEventDefinition.get_timedelta_from_start(parsed, now)
        except Exception:
            return None
    if expression in data:
        value = data[expression]
    elif expression[:1].isdigit():
        value = expression  # a date literal, e.g. camunda:dueDate="2026-12-01T18:00:00+08:00"
    else:
        # an expression over case data, e.g. add_days(handle_deadline, extension_days), run in the sandbox
        try:
            value = DUE_DATE_SANDBOX.evaluate(expression, dict(data))
        except Exception:  # noqa: BLE001 -- a due date that cannot be computed is shown as none
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=now.tzinfo)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return now + timedelta(days=value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)
        except ValueError:
            return None
    return None


# a cycle's turns one firing (the worker's, or an official's step that meets them first) steps
# through at most (_fire_as_due): a year's daily cycle and more; the rest fire together at the
# real time
MAX_TIMER_STEPS = 1000
CYCLE_TIMER = "CycleTimerEventDefinition"

# SpiffWorkflow's pending timer events: Duration-, Cycle- and TimeDateEventDefinition. The
# last has no "Timer" in its name: matching on "Timer" left a case waiting only on a timeDate
# (the petition's 60-day handling limit, the 复查/复核 windows) with no next_timer_at, so the
# worker never fired it although its due date showed red.
TIMER_EVENT_TYPES = ("DurationTimerEventDefinition", "CycleTimerEventDefinition", "TimeDateEventDefinition")


def _timers(workflow: BpmnWorkflow) -> list[tuple[datetime, str]]:
    """(due moment, event type) of every timer the case waits on."""
    due = []
    for event in workflow.waiting_events():
        if event.event_type not in TIMER_EVENT_TYPES and "Timer" not in event.event_type:
            continue
        value = event.value
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                continue
        if not isinstance(value, datetime):
            continue
        # a date without an offset is read as SpiffWorkflow compares it: in UTC
        due.append((value if value.tzinfo else value.replace(tzinfo=timezone.utc), event.event_type))
    return due


def _next_timer(workflow: BpmnWorkflow) -> datetime | None:
    return min((moment for moment, _type in _timers(workflow)), default=None)

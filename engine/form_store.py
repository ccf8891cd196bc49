"""Where edited forms live, and the rule that keeps old tasks on their form.

- `forms/<key>.yaml` are the shipped defaults; a process names one as `formKey="key"`.
- The designer's form editor saves a definition as a new, never-changed revision in
  the table `form_revision` (who, when, the YAML text, its hash). Revision N of `key`
  is named `key@N`.
- A process uses an edited form by naming `key@N` as the task's formKey (or its
  startForm) and being deployed: that process version, and every task it creates,
  renders `key@N` for ever. Saving revision N+1 changes nothing for running tasks;
  the designer moves processes onto it by deploying them with `key@N+1`
  (`FormEditor.adopt` rewrites the references and deploys in one step).

So a task always renders the form its process version was deployed with: versions
name immutable definitions, and nothing edits a definition in place.

`VersionedForms` is the registry the service uses: bare keys from the folder,
`key@N` from the table (parsed once: a revision never changes).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

import yaml
from sqlalchemy import func, select

from forms import FieldDef, FormDef, FormDefinitionError, FormRegistry, load_yaml, parse_definition

from . import clock
from .errors import InvalidInput, NotFound, PermissionDenied
from .models import DEPT_TYPES, ROLES, FormRevision, latest_versions

REVISION_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)@(?P<n>[1-9][0-9]{0,5})$")
MAX_DEFINITION_CHARS = 100_000


def split_key(key: str) -> tuple[str, int | None]:
    match = REVISION_RE.match(key or "")
    if match:
        return match.group("key"), int(match.group("n"))
    return key, None


class VersionedForms(FormRegistry):
    """Shipped forms by key, saved revisions by `key@N`.

    Revisions are read into memory up front, when the designer's pages ask for the
    keys, and as they are saved. A miss is looked up in the database (another web worker
    or process may have saved it): `get` is called inside the service's transactions, so
    on SQLite, where a session's transaction begins IMMEDIATE and would wait for the very
    write lock its caller holds, the lookup is one autocommit read on a connection of its
    own (WAL: a read never waits for a writer)."""

    def __init__(self, directory=None, db=None):
        super().__init__(directory)
        self.db = db
        self._revisions: dict[str, FormDef] = {}
        self.refresh()

    def refresh(self) -> None:
        """Read every saved revision not yet in memory (never changed once saved)."""
        if self.db is None:
            return
        from sqlalchemy.exc import SQLAlchemyError
        try:
            with self.db.read_session() as session:
                rows = session.execute(select(FormRevision.form_key, FormRevision.revision,
                                              FormRevision.definition)).all()
        except SQLAlchemyError:  # a database not migrated yet has no saved forms
            return
        for key, number, text in rows:
            ref = f"{key}@{number}"
            if ref not in self._revisions:
                self._revisions[ref] = load_revision(text, ref)

    def add_revision(self, key: str, form: FormDef) -> None:
        self._revisions[key] = form

    def get(self, key: str) -> FormDef | None:
        base, number = split_key(key) if isinstance(key, str) else (key, None)
        if number is None:
            return super().get(key)
        if key not in self._revisions and self.db is not None:
            text = self._saved_definition(base, number)
            if text is not None:
                self._revisions[key] = load_revision(text, key)
        return self._revisions.get(key)

    def _saved_definition(self, base: str, number: int) -> str | None:
        if self.db.is_postgres:
            with self.db.read_session() as session:
                return session.scalar(select(FormRevision.definition).where(
                    FormRevision.form_key == base, FormRevision.revision == number))
        raw = self.db.engine.raw_connection()   # sqlite3 in autocommit: no BEGIN IMMEDIATE
        try:
            row = raw.cursor().execute(
                f"SELECT definition FROM {FormRevision.__tablename__} WHERE form_key = ? AND revision = ?",
                (base, number)).fetchone()
        finally:
            raw.close()
        return row[0] if row else None

    def keys(self) -> set[str]:
        self.refresh()
        return super().keys() | set(self._revisions)

    def revision_texts(self) -> dict[str, str]:
        """{key@N: YAML} of every saved revision (for the scenario runner's child process)."""
        if self.db is None:
            return {}
        with self.db.read_session() as session:
            return {f"{r.form_key}@{r.revision}": r.definition for r in session.scalars(select(FormRevision))}


def load_revision(text: str, key: str) -> FormDef:
    form = parse_definition(load_yaml(text), source=key)
    form.key = key
    return form


# ------------------------------------------------------------------ editor

@dataclass
class DefinitionError:
    field: str | None        # the field's name, or None for the whole definition
    line: int | None         # 1-based line in the text, where known
    message: str
    zh: str = ""             # the same in Chinese, for the form editor's page

    def text(self, lang: str = "en") -> str:
        return (self.zh or self.message) if lang == "zh" else self.message


@dataclass
class FormCheck:
    form: FormDef | None
    errors: list[DefinitionError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.form is not None and not self.errors


@dataclass
class FormEntry:
    key: str
    title: dict
    shipped: bool
    revisions: list[tuple[int, datetime, str]]     # (revision, saved at, saved by), newest first
    used_by: dict[str, str]                        # process key -> the form reference its newest version uses

    @property
    def latest_ref(self) -> str:
        return f"{self.key}@{self.revisions[0][0]}" if self.revisions else self.key


_FIELD_IN_MESSAGE = re.compile(r"field '([^']+)'|field #(\d+)")


def _line_of_field(text: str, name: str | None, index: int | None) -> int | None:
    lines = text.splitlines()
    if name:
        pattern = re.compile(r"^\s*-?\s*name\s*:\s*['\"]?" + re.escape(name) + r"['\"]?\s*(#.*)?$")
        for i, line in enumerate(lines, 1):
            if pattern.match(line):
                return i
    if index:
        count = 0
        for i, line in enumerate(lines, 1):
            if re.match(r"^\s*-\s*\S", line) and re.match(r"^\s{0,4}-", line):
                count += 1
                if count == index:
                    return i
    return None


def check_definition(text: str, key: str | None = None) -> FormCheck:
    """Validate a form definition's YAML: errors point at the field (name and line)."""
    if not isinstance(text, str) or not text.strip():
        return FormCheck(None, [DefinitionError(None, None, "the definition is empty", "表单定义为空")])
    if len(text) > MAX_DEFINITION_CHARS:
        return FormCheck(None, [DefinitionError(None, None, "the definition is too long", "表单定义过长")])
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return FormCheck(None, [DefinitionError(None, mark.line + 1 if mark else None,
                                                f"not valid YAML: {problem}", f"不是有效的 YAML：{problem}")])
    try:
        form = parse_definition(raw, source="form")
    except FormDefinitionError as exc:
        message = str(exc).removeprefix("form: ")
        match = _FIELD_IN_MESSAGE.search(message)
        name = match.group(1) if match and match.group(1) else None
        index = int(match.group(2)) if match and match.group(2) else None
        if name is None and index and isinstance(raw, dict) and isinstance(raw.get("fields"), list):
            item = raw["fields"][index - 1] if index <= len(raw["fields"]) else None
            name = item.get("name") if isinstance(item, dict) and isinstance(item.get("name"), str) else None
        line = _line_of_field(text, name, index)
        if line is None and message.startswith("'key'"):
            line = next((i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("key")), None)
        return FormCheck(None, [DefinitionError(name, line, message, exc.zh or "")])
    errors = []
    if key is not None and form.key != key:
        line = next((i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("key")), None)
        errors.append(DefinitionError(None, line, f"'key' must stay '{key}' (it is '{form.key}'); "
                                                  "a new form needs a new file",
                                      f"key 须保持为“{key}”（现在是“{form.key}”）；新表单请新建文件"))
    for f in form.fields:
        problem = _field_problem(f)
        if problem:
            errors.append(DefinitionError(f.name, _line_of_field(text, f.name, None), *problem))
    if not form.input_fields:
        errors.append(DefinitionError(None, None, "the form has no field to fill in", "表单没有可填写的字段"))
    return FormCheck(form, errors)


def _field_problem(f: FieldDef) -> tuple[str, str] | None:
    """Limits that would make a field impossible to fill in (the parser accepts them), in
    English and in Chinese."""
    if f.min_length is not None and f.max_length is not None and f.min_length > f.max_length:
        return (f"min_length {f.min_length} is larger than max_length {f.max_length}",
                f"min_length {f.min_length} 大于 max_length {f.max_length}")
    if f.min is not None and f.max is not None and f.min > f.max:
        return f"min {f.min} is larger than max {f.max}", f"min {f.min} 大于 max {f.max}"
    if len(set(map(str, f.choice_values))) != len(f.choices):
        return "two choices have the same value", "有两个选项的 value 相同"
    if f.readonly and f.required:
        return "a read-only field cannot be required", "只读字段不能设为必填"
    unknown_roles = [r for r in f.roles if r not in ROLES]
    if unknown_roles:
        return (f"role {', '.join(unknown_roles)} is not a role; use one of: {', '.join(ROLES)}",
                f"角色 {', '.join(unknown_roles)} 不存在；可选：{', '.join(ROLES)}")
    if f.name in ("department", "departments"):
        # the lanes of department tasks read these: a value that is no department type
        # would leave the task it picks without a holder
        unknown = [str(v) for v in f.choice_values if v not in DEPT_TYPES]
        if unknown:
            return (f"choice {', '.join(unknown)} is no department type; use one of: {', '.join(DEPT_TYPES)}",
                    f"选项 {', '.join(unknown)} 不是部门类型；可选：{', '.join(DEPT_TYPES)}")
    return None


class FormEditor:
    """The designer's form operations over a `WorkflowService` whose `forms` is `VersionedForms`."""

    def __init__(self, service):
        self.service = service
        self.db = service.db

    def _actor(self, session, actor, edit=True):
        from .designer import EDIT_ROLES, READ_ROLES
        user = self.service._user(session, actor)
        roles = EDIT_ROLES if edit else READ_ROLES
        if not any(ra.role in roles for ra in user.roles):
            raise PermissionDenied("only process designers and administrators may edit forms",
                                   zh="只有流程设计员和管理员可以编辑表单")
        return user

    def _shipped(self) -> FormRegistry:
        return FormRegistry(self.service.forms.directory)

    def forms(self, actor) -> list[FormEntry]:
        shipped = self._shipped().forms
        with self.db.read_session() as session:
            self._actor(session, actor)
            revisions: dict[str, list] = {}
            for row in session.scalars(select(FormRevision).order_by(FormRevision.revision.desc())):
                revisions.setdefault(row.form_key, []).append((row.revision, row.saved_at, row.saved_by))
            used = self._references(session)
        entries = []
        for key in sorted(set(shipped) | set(revisions)):
            title = shipped[key].title if key in shipped else {"zh": key, "en": key}
            entries.append(FormEntry(key, title, key in shipped, revisions.get(key, []), used.get(key, {})))
        return entries

    def _references(self, session) -> dict[str, dict[str, str]]:
        """{form key: {process key: reference}} for the newest version of every process."""
        from .bpmn import all_specs, is_user_task, user_task_info
        refs: dict[str, dict[str, str]] = {}
        for version in latest_versions(session):
            key = version.process_key
            parsed = self.service.specs.get(version)
            names = [version.properties.get("startForm")]
            names += [user_task_info(t, parsed.camunda_attrs).form_key for _s, t in all_specs(parsed) if is_user_task(t)]
            for name in filter(None, names):
                refs.setdefault(split_key(name)[0], {})[key] = name
        return refs

    def text(self, actor, key: str) -> tuple[str, str]:
        """(reference, YAML) of the newest definition of `key` (or of `key@N` exactly)."""
        base, number = split_key(key)
        with self.db.read_session() as session:
            self._actor(session, actor)
            query = select(FormRevision).where(FormRevision.form_key == base)
            query = query.where(FormRevision.revision == number) if number else \
                query.order_by(FormRevision.revision.desc()).limit(1)
            row = session.scalar(query)
        if row is not None:
            return f"{row.form_key}@{row.revision}", row.definition
        if number is None and base in self._shipped().forms:
            path = self._shipped().directory / f"{base}.yaml"
            return base, path.read_text(encoding="utf-8")
        raise NotFound(f"no form '{str(key)[:60]}'", zh="找不到该表单")

    def check(self, actor, key: str, text: str) -> FormCheck:
        with self.db.read_session() as session:
            self._actor(session, actor)
        return check_definition(text, split_key(key)[0])

    def save(self, actor, key: str, text: str) -> tuple[str, bool]:
        """Store the definition as the next revision; (reference, created). The same text
        as an existing revision creates nothing. A definition with errors is refused."""
        base = split_key(key)[0]
        result = check_definition(text, base)
        if not result.ok:
            raise InvalidInput("the form definition has errors: " + "; ".join(e.message for e in result.errors),
                               fields={(e.field or "definition"): [e.message] for e in result.errors},
                               zh="表单定义有错误，请按提示修改")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self.db.unit_of_work() as session:
            user = self._actor(session, actor)
            same = session.scalar(select(FormRevision).where(FormRevision.form_key == base,
                                                             FormRevision.content_hash == digest))
            if same is not None:
                return f"{base}@{same.revision}", False
            latest = session.scalar(select(func.max(FormRevision.revision)).where(FormRevision.form_key == base)) or 0
            session.add(FormRevision(form_key=base, revision=latest + 1, definition=text, content_hash=digest,
                                     saved_at=clock.now(), saved_by=user.username))
        reference = f"{base}@{latest + 1}"
        if hasattr(self.service.forms, "add_revision"):
            self.service.forms.add_revision(reference, load_revision(text, reference))
        return reference, True

    def adopt(self, actor, reference: str, process_keys: list[str]):
        """Point the newest version of each process at `reference` (`key@N`) wherever it uses
        that form, and deploy: new process versions; running cases keep their forms."""
        from .designer import Designer
        base, number = split_key(reference)
        if number is None or self.service.forms.get(reference) is None:
            raise NotFound(f"no saved form '{str(reference)[:60]}'", zh="找不到该表单版本")
        designer = Designer(self.service)
        outcomes = []
        for process_key in process_keys:
            detail = designer.version(actor, process_key)
            pattern = re.compile(r'((?:name="formKey" value|camunda:formKey|name="startForm" value)=")'
                                 + re.escape(base) + r'(?:@\d+)?(")')
            files = {name: pattern.sub(lambda m: m.group(1) + reference + m.group(2), text)
                     for name, text in detail.files.items() if not name.lower().endswith(".dmn")}
            changed = {name: text for name, text in files.items() if text != detail.files[name]}
            if changed:
                outcomes.append((process_key, designer.deploy(actor, changed)))
        return outcomes

"""The designer's service: the process library, checking and deploying edited or
uploaded BPMN/DMN, and the diff between two versions of a process.

Only `designer` and `admin` may change anything (deploy, migrate); `auditor`s may
read the library. Everything goes through `engine.deploy`: the same validation as
`gridflow validate`, the same content-hash versions as `gridflow deploy`, so a
deployed edit is a new version and running cases stay on theirs. A file set with
any problem is refused whole; nothing is stored.

Files are checked in the context of what is deployed: the newest version's files
of every process (so an edited BPMN still finds the DMN and called processes it
names), overridden by the files being checked. Problems are reported only for the
files the designer sent; context files were valid when they were deployed.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree
from sqlalchemy import func, select

from .deploy import (DeployError, Problem, _analyse, active_usernames, deploy_files, executable_processes,
                     unique_problems, validate_files)
from .bpmn import ENGLISH_NAME, element_properties
from forms import load_yaml
from .notes import version_notes
from .diagram import process_file
from .errors import InvalidInput, NotFound, PermissionDenied, not_utf8
from .models import Case, ProcessVersion, User, latest_versions

EDIT_ROLES = {"designer", "admin"}
READ_ROLES = EDIT_ROLES | {"auditor"}
MAX_FILE_CHARS = 2_000_000
MAX_FILES = 20
DI_NAMESPACES = {
    "http://www.omg.org/spec/BPMN/20100524/DI", "http://www.omg.org/spec/DD/20100524/DC",
    "http://www.omg.org/spec/DD/20100524/DI", "https://www.omg.org/spec/DMN/20191111/DMNDI/",
    "http://www.omg.org/spec/DMN/20180521/DMNDI/", "http://www.omg.org/spec/DMN/20180521/DI/",
    "http://www.omg.org/spec/DMN/20180521/DC/", "https://www.omg.org/spec/DMN/20191111/DI/",
    "https://www.omg.org/spec/DMN/20191111/DC/",
}


@dataclass
class VersionInfo:
    id: int
    process_key: str
    version: int
    name: str
    content_hash: str
    deployed_at: datetime
    deployed_by: str | None
    files: list[str]
    open_cases: int = 0
    all_cases: int = 0


@dataclass
class ProcessEntry:
    key: str
    name: str
    versions: list[VersionInfo]          # newest first

    @property
    def latest(self) -> VersionInfo:
        return self.versions[0]

    @property
    def open_cases(self) -> int:
        return sum(v.open_cases for v in self.versions)


@dataclass
class VersionDetail:
    info: VersionInfo
    files: dict[str, str]
    main_file: str | None


@dataclass
class CheckResult:
    """What checking a set of files found: problems only in the files sent."""
    files: list[str]
    problems: list[Problem]
    processes: list[str]                 # executable processes the files define
    notes: list[Problem] = field(default_factory=list)   # `notes.version_notes`: refuse nothing

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class DeployOutcome:
    check: CheckResult
    created: list[VersionInfo] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


@dataclass
class ElementChange:
    element: str
    kind: str                            # BPMN/DMN element type, e.g. userTask
    name: str
    file: str
    details: list[str] = field(default_factory=list)   # what changed, for changed elements
    name_en: str = ""                    # its `nameEn`, which the English page shows for `name`


@dataclass
class VersionDiff:
    process_key: str
    old: VersionInfo
    new: VersionInfo
    added: list[ElementChange]
    removed: list[ElementChange]
    changed: list[ElementChange]
    layout_only: list[str]               # elements only moved on the diagram

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)


def _info(version: ProcessVersion, counts: dict | None = None) -> VersionInfo:
    counts = counts or {}
    return VersionInfo(id=version.id, process_key=version.process_key, version=version.version, name=version.name,
                       content_hash=version.content_hash, deployed_at=version.deployed_at,
                       deployed_by=version.deployed_by, files=sorted(version.files),
                       open_cases=counts.get((version.id, "open"), 0),
                       all_cases=sum(n for (vid, _s), n in counts.items() if vid == version.id))


def require_roles(service, session, actor, roles, refusal: str, refusal_zh: str) -> User:
    """The acting user, if they hold one of `roles` anywhere; else PermissionDenied."""
    user = service._user(session, actor)
    if not any(ra.role in roles for ra in user.roles):
        raise PermissionDenied(refusal, zh=refusal_zh)
    return user


def version_row(session, process_key: str, number) -> ProcessVersion:
    """Version `number` of a process, or NotFound saying which; a number outside the column's
    range is no version either (it used to overflow the query: a 500)."""
    try:
        number = int(number)
    except (TypeError, ValueError):
        raise NotFound("no such version", zh="找不到该版本") from None
    version = None
    if 1 <= number <= 2**31 - 1:
        version = session.scalar(select(ProcessVersion).where(
            ProcessVersion.process_key == str(process_key)[:100], ProcessVersion.version == number))
    if version is None:
        raise NotFound(f"process '{str(process_key)[:60]}' has no version {str(number)[:20]}",
                       zh=f"流程“{str(process_key)[:60]}”没有第 {str(number)[:20]} 版")
    return version


class Designer:
    """The designer's operations over a `WorkflowService` (its database, forms and spec cache)."""

    def __init__(self, service):
        self.service = service
        self.db = service.db

    # ---------------------------------------------------------- permissions

    def _actor(self, session, actor, roles=EDIT_ROLES) -> User:
        if roles is EDIT_ROLES:
            return require_roles(self.service, session, actor, roles,
                                 "only process designers and administrators may change processes",
                                 "只有流程设计员和管理员可以修改、部署或迁移流程")
        return require_roles(self.service, session, actor, roles,
                             "only process designers, administrators and auditors may read the process library",
                             "只有流程设计员、管理员和督查人员可以查看流程库")

    def may_edit(self, actor) -> bool:
        with self.db.read_session() as session:
            try:
                self._actor(session, actor)
            except PermissionDenied:
                return False
            return True

    # -------------------------------------------------------------- library

    def library(self, actor) -> list[ProcessEntry]:
        """Every deployed process with all its versions, newest first, and their cases."""
        with self.db.read_session() as session:
            self._actor(session, actor, READ_ROLES)
            counts = self._case_counts(session)
            by_key = defaultdict(list)
            for version in session.scalars(select(ProcessVersion).order_by(
                    ProcessVersion.process_key, ProcessVersion.version.desc())):
                by_key[version.process_key].append(_info(version, counts))
            return [ProcessEntry(key=key, name=versions[0].name, versions=versions)
                    for key, versions in sorted(by_key.items())]

    def process(self, actor, process_key: str) -> ProcessEntry:
        for entry in self.library(actor):
            if entry.key == process_key:
                return entry
        raise NotFound(f"process '{str(process_key)[:60]}' is not deployed", zh="找不到该流程")

    @staticmethod
    def _case_counts(session, process_key: str | None = None) -> dict:
        query = select(Case.process_version_id, Case.status, func.count()).group_by(
            Case.process_version_id, Case.status)
        if process_key:
            query = query.where(Case.process_key == process_key)
        return {(vid, status): n for vid, status, n in session.execute(query)}

    def version(self, actor, process_key: str, number=None) -> VersionDetail:
        """One version with its files (the newest when `number` is None)."""
        with self.db.read_session() as session:
            self._actor(session, actor, READ_ROLES)
            if number is None:
                version = self.service.latest_version(session, process_key)
            else:
                version = version_row(session, process_key, number)
            counts = self._case_counts(session, version.process_key)
            return VersionDetail(info=_info(version, counts), files=dict(version.files),
                                 main_file=process_file(version.files, version.process_key))

    # ------------------------------------------------------ check and deploy

    @staticmethod
    def _latest_versions(session) -> list[ProcessVersion]:
        return sorted(latest_versions(session), key=lambda v: (v.deployed_at, v.id))

    def _groups(self, session, files: dict[str, str]) -> list[dict[str, str]]:
        """The file sets to check the sent files in: each deployed process whose newest
        version has a file of that name, with its own files (two processes may ship
        different files of the same name); files no process has yet, with everything
        deployed around them (newest wins) for the decisions and processes they call."""
        latest = self._latest_versions(session)
        groups, touched = [], set()
        for version in latest:
            shared = set(version.files) & set(files)
            if shared:
                groups.append({**version.files, **files})
                touched |= shared
        if set(files) - touched or not groups:
            context = {}
            for version in latest:
                context.update(version.files)
            groups.append({**context, **files})
        return groups

    def form_keys(self) -> set[str]:
        return set(self.service.forms.keys())

    @staticmethod
    def _clean_upload(files) -> dict[str, str]:
        """{name: text} from what a browser sent; bad names, sizes or encodings are refused."""
        if not isinstance(files, dict) or not files:
            raise InvalidInput("send at least one .bpmn or .dmn file", fields={"files": ["no file"]},
                               zh="请至少提交一个 .bpmn 或 .dmn 文件")
        if len(files) > MAX_FILES:
            raise InvalidInput(f"at most {MAX_FILES} files at once", fields={"files": ["too many files"]},
                               zh=f"一次最多提交 {MAX_FILES} 个文件")
        clean, errors, errors_zh = {}, {}, {}

        def refuse(base, en, zh):
            errors[base], errors_zh[base] = [en], zh

        for name, content in files.items():
            base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
            if not base.lower().endswith((".bpmn", ".dmn")) or len(base) > 120 or base.startswith("."):
                refuse(base or "?", "only .bpmn and .dmn files can be deployed", "只能部署 .bpmn 和 .dmn 文件")
                continue
            if isinstance(content, bytes):
                try:
                    content = content.decode("utf-8-sig")
                except UnicodeDecodeError as exc:
                    refuse(base, f"the file is {not_utf8(exc)}",
                           f"文件不是 UTF-8 文本（第 {exc.start} 字节，可能是 GBK 编码）；"
                           f"请在建模器中另存为 UTF-8，或用 iconv -f GBK -t UTF-8 转换")
                    continue
            if not isinstance(content, str) or not content.strip():
                refuse(base, "the file is empty", "文件为空")
                continue
            if len(content) > MAX_FILE_CHARS:
                refuse(base, f"the file is larger than {MAX_FILE_CHARS // 1_000_000} MB",
                       f"文件超过 {MAX_FILE_CHARS // 1_000_000} MB")
                continue
            if "\x00" in content:
                refuse(base, "the file contains NUL characters; it is not a BPMN/DMN text file",
                       "文件含有空字符，不是 BPMN/DMN 文本文件")
                continue
            clean[base] = content
        if errors:
            raise InvalidInput("some files cannot be checked: " + "; ".join(
                f"{k}: {', '.join(v)}" for k, v in errors.items()), fields=errors,
                zh="部分文件无法检查：" + "；".join(f"{k}：{v}" for k, v in errors_zh.items()))
        return clean

    def _check(self, session, files: dict[str, str], form_keys: set[str]) -> tuple[CheckResult, list[dict[str, str]]]:
        groups = self._groups(session, files)
        problems = []
        try:
            processes = sorted(pid for pid in _analyse(files).executable)
            for merged in groups:
                problems += [p for p in validate_files(merged, form_keys)
                             if p.file in files or p.file not in merged]
            # a file checked with each deployed process using it: one problem per element and cause
            problems = unique_problems(problems)
        except Exception as exc:  # a parser crash is a finding about the files, never a traceback
            problems = [Problem(sorted(files)[0], "", f"the files could not be read: {exc.__class__.__name__}: {exc}",
                                "open the file in a BPMN modeler and save it again",
                                f"文件无法读取：{exc.__class__.__name__}: {exc}", "请在 BPMN 建模器中打开并重新保存")]
            processes = []
        if not problems and not processes and any(not n.lower().endswith(".dmn") for n in files):
            problems = [Problem(name, "", "the file defines no executable process, so there is nothing to run",
                                "mark the process executable (isExecutable=\"true\") in the modeler",
                                "文件中没有可执行的流程，没有可以运行的内容",
                                "请在建模器中把流程标为可执行（isExecutable=\"true\"）")
                        for name in sorted(files) if not name.lower().endswith(".dmn")]
        notes = []
        if not problems:
            for merged in groups:
                notes += [n for n in version_notes(merged, forms=self.service.forms,
                                                   find_users=active_usernames(session))
                          if n.file in files and n not in notes]
        return CheckResult(files=sorted(files), problems=problems, processes=processes, notes=notes), groups

    def check(self, actor, files) -> CheckResult:
        """The same validation as `gridflow validate`, stores nothing."""
        files = self._clean_upload(files)
        form_keys = self.form_keys()  # read before the check's session: saved forms live in the database too
        with self.db.read_session() as session:
            self._actor(session, actor)
            result, _groups = self._check(session, files, form_keys)
            return result

    def deploy(self, actor, files) -> DeployOutcome:
        """Check, then deploy every process the files define or change: a new version per
        changed process, recorded with who and when; nothing at all if any problem."""
        files = self._clean_upload(files)
        form_keys = self.form_keys()  # outside the transaction: one connection at a time on SQLite
        with self.db.unit_of_work() as session:
            user = self._actor(session, actor)
            result, groups = self._check(session, files, form_keys)
            outcome = DeployOutcome(check=result)
            if not result.ok:
                return outcome
            created, unchanged = [], []
            try:
                # per group, only the processes the sent files define or feed (a DMN feeds every caller)
                for merged in groups:
                    deployed = deploy_files(session, self._affected(merged, files), form_keys,
                                            actor=user.username, with_notes=False)   # _check noted them
                    created += deployed.created
                    unchanged += [k for k in deployed.unchanged if k not in unchanged]
            except DeployError as exc:
                result.problems = list(exc.problems)
                session.rollback()
                return outcome
            outcome.created = [_info(v) for v in created]
            created_keys = {v.process_key for v in created}
            outcome.unchanged = [k for k in unchanged if k not in created_keys]
            return outcome

    @staticmethod
    def _affected(merged: dict[str, str], files: dict[str, str]) -> dict[str, str]:
        """The files of every process whose closure includes a sent file."""
        from .deploy import _closure_files
        analysis = _analyse(merged)
        needed = {}
        for pid in analysis.executable:
            try:
                closure = _closure_files(analysis, pid, merged)
            except Exception:
                continue
            if set(closure) & set(files):
                needed.update(closure)
        return needed or files

    # ------------------------------------------------------------------ diff

    def diff(self, actor, process_key: str, old_number, new_number) -> VersionDiff:
        with self.db.read_session() as session:
            self._actor(session, actor, READ_ROLES)
            old = version_row(session, process_key, old_number)
            new = version_row(session, process_key, new_number)
            added, removed, changed, layout = diff_files(old.files, new.files)
            counts = self._case_counts(session, process_key)
            return VersionDiff(process_key=old.process_key, old=_info(old, counts), new=_info(new, counts),
                               added=added, removed=removed, changed=changed, layout_only=layout)


# ---------------------------------------------------------------------- diff

def _local(node) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


def _is_di(node) -> bool:
    return isinstance(node.tag, str) and etree.QName(node).namespace in DI_NAMESPACES


def _elements(files: dict[str, str]) -> dict[str, tuple]:
    """id -> (file, kind, name, signature, English name) for every model element with an id (diagram
    layout excluded); the English name is the element's own `nameEn` in these files, so a removed
    element is named as its old version named it.
    The signature is the element's own attributes and content, with nested elements
    that have their own id reduced to a reference, so a change is reported once, where it is."""
    out = {}
    for filename, text in sorted(files.items()):
        try:
            root = etree.fromstring(text.encode("utf-8"))
        except etree.XMLSyntaxError:
            continue
        for node in root.iter():
            if not isinstance(node.tag, str) or _is_di(node) or not node.get("id") or node is root:
                continue
            if any(_is_di(a) for a in node.iterancestors()):
                continue
            out[node.get("id")] = (filename, _local(node), node.get("name") or "", _signature(node),
                                   element_properties(node).get(ENGLISH_NAME, "").strip())
    return out


def _signature(node) -> tuple:
    attrs = tuple(sorted((etree.QName(k).localname if k.startswith("{") else k, v)
                         for k, v in node.attrib.items() if k != "id"))
    parts = []
    for child in node:
        if not isinstance(child.tag, str) or _is_di(child):
            continue
        if child.get("id"):
            parts.append(("ref", _local(child), child.get("id")))
        else:
            parts.append(("child", _local(child), _flat(child)))
    text = (node.text or "").strip()
    return attrs, tuple(parts), text


def _flat(node) -> str:
    """An id-less child (incoming, extensionElements, conditionExpression …) as canonical text."""
    if any(isinstance(d.tag, str) and d.get("id") for d in node.iterdescendants()):
        return " ".join(sorted(f"{_local(d)}#{d.get('id')}" for d in node.iterdescendants()
                               if isinstance(d.tag, str) and d.get("id"))) + " " + (node.text or "").strip()
    return etree.tostring(node, method="c14n").decode("utf-8")


def _describe(old_sig: tuple, new_sig: tuple) -> list[str]:
    details = []
    old_attrs, new_attrs = dict(old_sig[0]), dict(new_sig[0])
    for key in sorted(set(old_attrs) | set(new_attrs)):
        if old_attrs.get(key) != new_attrs.get(key):
            details.append(f"{key}: {old_attrs.get(key, '—')!s} → {new_attrs.get(key, '—')!s}")
    old_parts, new_parts = set(old_sig[1]), set(new_sig[1])
    for kind in sorted({p[1] for p in old_parts ^ new_parts}):
        gone = [p[2] for p in old_parts - new_parts if p[1] == kind]
        came = [p[2] for p in new_parts - old_parts if p[1] == kind]
        if all(p[0] == "ref" for p in (old_parts ^ new_parts) if p[1] == kind):
            details.append(f"{kind}: " + ", ".join([f"-{g}" for g in sorted(gone)] + [f"+{c}" for c in sorted(came)]))
        elif kind in _REFERENCE_LISTS:
            # a lane's flowNodeRef, a node's incoming/outgoing: which came and went (a task
            # moved into a lane read "flowNodeRef: '' → 'revisit'", two of them "flowNodeRef changed")
            gone, came = sorted(map(_text_of_flat, gone)), sorted(map(_text_of_flat, came))
            details.append(f"{kind}: " + ", ".join([f"-{g}" for g in gone] + [f"+{c}" for c in came]))
        elif kind == "extensionElements":
            details += _property_changes(gone, came) or [f"{kind} changed"]
        elif len(gone) <= 1 and len(came) <= 1:   # a condition, a script, a timer …: what it was and is
            before, after = (_text_of_flat(g) for g in (gone or [""]) + (came or [""]))
            details.append(f"{kind}: {before[:80]!r} → {after[:80]!r}")
        else:
            details.append(f"{kind} changed")
    if old_sig[2] != new_sig[2]:
        details.append(f"text: {old_sig[2][:60]!r} → {new_sig[2][:60]!r}")
    return details


# id-less children that each name one element: a list of references, not a value
_REFERENCE_LISTS = {"flowNodeRef", "incoming", "outgoing", "sourceRef", "targetRef", "dataInputRefs",
                    "dataOutputRefs", "eventDefinitionRef", "supportedInterfaceRef"}


def _text_of_flat(flat: str) -> str:
    """The text of an element `_flat` gave as canonical XML ('' for none)."""
    try:
        return "".join(etree.fromstring(flat.encode("utf-8")).itertext()).strip()
    except etree.XMLSyntaxError:
        return flat.strip()


def _extension_values(flats: list[str]) -> dict[str, str]:
    """What extension elements set: each spiffworkflow:property by its name, any other
    element (a script, a message variable …) by its own name."""
    values = {}
    for flat in flats:
        try:
            root = etree.fromstring(flat.encode("utf-8"))
        except etree.XMLSyntaxError:
            continue
        for node in root.iter():
            if not isinstance(node.tag, str) or node is root:
                continue
            if _local(node) == "property" and node.get("name"):
                values[node.get("name")] = node.get("value", "")
            elif len(node) == 0 and _local(node) != "property":
                values[_local(node)] = (node.text or "").strip()
    return values


def _property_changes(gone: list[str], came: list[str]) -> list[str]:
    """`formKey: a → b`, one line per extension value that changed."""
    old, new = _extension_values(gone), _extension_values(came)
    return [f"{key}: {old.get(key, '—')[:80]!s} → {new.get(key, '—')[:80]!s}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def diff_files(old_files: dict[str, str], new_files: dict[str, str]):
    """(added, removed, changed, layout_only) model elements between two file sets."""
    old, new = _elements(old_files), _elements(new_files)
    added = [ElementChange(eid, new[eid][1], new[eid][2], new[eid][0], name_en=new[eid][4])
             for eid in new if eid not in old]
    removed = [ElementChange(eid, old[eid][1], old[eid][2], old[eid][0], name_en=old[eid][4])
               for eid in old if eid not in new]
    changed = []
    for eid in old:
        if eid in new and old[eid][3] != new[eid][3]:
            changed.append(ElementChange(eid, new[eid][1], new[eid][2] or old[eid][2], new[eid][0],
                                         _describe(old[eid][3], new[eid][3]), name_en=new[eid][4] or old[eid][4]))
    layout = sorted(_layout_changes(old_files, new_files) - {c.element for c in added + removed + changed})
    return added, removed, changed, layout


def _geometry(shape) -> tuple:
    """Where a shape or edge is drawn: its bounds and waypoints, rounded to whole points (a
    modeler's save rewrites whitespace and empty labels, which move nothing)."""
    def point(node, *names):
        return tuple(round(float(node.get(n) or 0)) for n in names)
    bounds = [point(n, "x", "y", "width", "height") for n in shape.iter() if isinstance(n.tag, str)
              and _local(n) == "Bounds" and n.getparent() is shape]
    waypoints = [point(n, "x", "y") for n in shape if isinstance(n.tag, str) and _local(n) == "waypoint"]
    return tuple(bounds), tuple(waypoints)


def _layout_changes(old_files, new_files) -> set[str]:
    def shapes(files):
        out = {}
        for text in files.values():
            try:
                root = etree.fromstring(text.encode("utf-8"))
            except etree.XMLSyntaxError:
                continue
            for node in root.iter():
                if _is_di(node) and _local(node) in ("BPMNShape", "BPMNEdge", "DMNShape", "DMNEdge"):
                    out[node.get("bpmnElement") or node.get("dmnElementRef") or node.get("id")] = _geometry(node)
        return out
    old, new = shapes(old_files), shapes(new_files)
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}



# ---------------------------------------------------------------- scenarios

SCENARIO_NAME_RE = __import__("re").compile(r"^[A-Za-z0-9_\-]{1,80}$")


@dataclass
class ScenarioFile:
    name: str
    title: str
    text: str


def _root():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent


class ScenarioRunner:
    """The designer's scenario page: list a process's scenarios, run one in isolation
    (engine/scenario_sandbox.py: a child process on a scratch database)."""

    def __init__(self, designer: Designer, scenario_dir=None, org_path=None):
        self.designer = designer
        self.scenario_dir = scenario_dir or _root() / "processes" / "scenarios"
        self.org_path = org_path or _root() / "demo" / "org.yaml"

    def scenarios(self, actor, process_key: str) -> list[ScenarioFile]:
        import yaml
        with self.designer.db.read_session() as session:
            self.designer._actor(session, actor)
        if not SCENARIO_NAME_RE.match(str(process_key)):
            return []
        found = []
        for path in sorted((self.scenario_dir / process_key).glob("*.yaml")):
            text = path.read_text(encoding="utf-8")
            try:
                raw = load_yaml(text)
                title = str(raw.get("title", path.stem)) if isinstance(raw, dict) else path.stem
            except yaml.YAMLError:
                title = path.stem
            found.append(ScenarioFile(path.stem, title, text))
        return found

    def run(self, actor, process_key: str, name: str | None = None, text: str | None = None, number=None):
        """Run the shipped scenario `name`, or the YAML `text` the designer typed, against
        the process's version `number` (default: newest). Nothing of it reaches the real database."""
        from .scenario_sandbox import run_isolated
        if text is None:
            matches = [s for s in self.scenarios(actor, process_key) if s.name == name]
            if not matches:
                raise NotFound(f"process '{str(process_key)[:60]}' has no scenario '{str(name)[:80]}'",
                               zh="找不到该测试场景")
            text = matches[0].text
        else:
            with self.designer.db.read_session() as session:
                self.designer._actor(session, actor)
            if not isinstance(text, str) or not text.strip() or len(text) > 200_000:
                raise InvalidInput("the scenario is empty or too long", fields={"text": ["empty or too long"]},
                                   zh="测试场景为空或过长")
            name = name if name and SCENARIO_NAME_RE.match(name) else "edited"
        detail = self.designer.version(actor, process_key, number)
        foreign = self._foreign_process(text, name, process_key, detail.files)
        if foreign:
            return foreign
        revisions = getattr(self.designer.service.forms, "revision_texts", dict)()
        # a scenario may run others of its process first (`earlier:`): they go along
        siblings = {s.name: s.text for s in self.scenarios(actor, process_key)}
        return run_isolated(detail.files, text, name, self.designer.service.forms.directory, self.org_path,
                            revisions, siblings)

    def _foreign_process(self, text: str, name: str, process_key: str, files: dict[str, str]):
        """A failed outcome when the scenario starts a process this page does not load. Only the
        page's version (its own files, called processes and decisions) is deployed in the sandbox,
        so such a scenario would be told its process "is not deployed", though it may well be:
        it belongs to another process's page (or names a process there is none of)."""
        import yaml
        from .scenario_sandbox import ScenarioOutcome
        try:
            raw = load_yaml(text)
        except yaml.YAMLError:
            return None                      # the sandbox reports the YAML error with its line
        wanted = raw.get("process") if isinstance(raw, dict) else None
        if not isinstance(wanted, str) or wanted in executable_processes(files):
            return None
        with self.designer.db.read_session() as session:
            deployed = {v.process_key for v in self.designer._latest_versions(session)}
        if wanted in deployed:
            return ScenarioOutcome(
                name, False, "load",
                f"the scenario is of process '{wanted}', not of '{process_key}' whose page this is: "
                f"run it on the scenario page of '{wanted}'",
                message_zh=f"该场景属于流程“{wanted}”，不属于本页的流程“{process_key}”；"
                           f"请到流程“{wanted}”的场景页运行它")
        return ScenarioOutcome(
            name, False, "load",
            f"the scenario names process '{wanted}', which is not deployed; "
            f"this page runs scenarios of '{process_key}': correct 'process:'",
            message_zh=f"场景所写的流程“{wanted}”没有部署；本页运行流程“{process_key}”的场景，"
                       f"请改正 process（流程）")

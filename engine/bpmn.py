"""Parsing BPMN/DMN with SpiffWorkflow's Spiff parser, and reading what the
engine needs from a spec: user tasks' lanes, form keys, due dates, assignees.

Designers may also use Camunda Modeler; its `camunda:formKey`,
`camunda:assignee`, `camunda:candidateGroups` and `camunda:dueDate` attributes
are read from the XML and honoured like the Spiff properties.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask as UserTaskMixin
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

from .models import ROLES

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"

# Attributes that carry engine metadata, Spiff property name -> Camunda attribute.
CAMUNDA_ATTRS = {
    "formKey": "formKey",
    "assignee": "assignee",
    "candidateGroups": "candidateGroups",
    "candidateUsers": "candidateUsers",
    "dueDate": "dueDate",
}


def data_key(expr: str) -> str:
    """`owning_leader`, `${owning_leader}` (Camunda style) -> `owning_leader`."""
    expr = expr.strip()
    if expr.startswith("${") and expr.endswith("}"):
        expr = expr[2:-1].strip()
    return expr


def is_dmn(filename: str) -> bool:
    return filename.lower().endswith(".dmn")


def camunda_attributes(element) -> dict[str, str]:
    """The engine metadata an lxml BPMN element carries as Camunda attributes, by the
    property name it stands for (`CAMUNDA_ATTRS`)."""
    return {key: element.attrib[f"{{{CAMUNDA_NS}}}{attr}"]
            for key, attr in CAMUNDA_ATTRS.items() if f"{{{CAMUNDA_NS}}}{attr}" in element.attrib}


class CamundaAwareParser(SpiffBpmnParser):
    """The Spiff parser, remembering Camunda extension attributes per element id."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.camunda_attrs: dict = {}   # (file, element id) and element id -> {property: value}

    def add_bpmn_xml(self, bpmn, filename=None):
        for node in bpmn.iter():
            if not isinstance(node.tag, str):
                continue
            attrs = camunda_attributes(node)
            if attrs and node.get("id"):
                # by file and id: two files may each have a Task_1 (user_task_info looks up the
                # task's own file first); by id alone for a spec that does not know its file
                self.camunda_attrs[(filename, node.get("id"))] = attrs
                self.camunda_attrs[node.get("id")] = attrs
        return super().add_bpmn_xml(bpmn, filename)


def new_parser() -> CamundaAwareParser:
    return CamundaAwareParser()


def load_files(parser: CamundaAwareParser, files: dict[str, str]) -> None:
    """Feed {filename: text} to the parser, DMN and BPMN alike."""
    for filename, text in sorted(files.items()):
        data = text.encode("utf-8") if isinstance(text, str) else text
        if is_dmn(filename):
            parser.add_dmn_io(io.BytesIO(data), filename=filename)
        else:
            parser.add_bpmn_io(io.BytesIO(data), filename=filename)


@dataclass
class ParsedProcess:
    key: str
    name: str
    spec: object
    subprocess_specs: dict
    properties: dict = field(default_factory=dict)
    camunda_attrs: dict = field(default_factory=dict)
    user_tasks: list | None = None  # [(bpmn id, name)], filled on first use
    mutable: bool = False  # SpiffWorkflow changes these specs at run time: copy per case


def parse_process(files: dict[str, str], process_key: str) -> ParsedProcess:
    parser = new_parser()
    load_files(parser, files)
    spec = parser.get_spec(process_key)
    subprocess_specs = parser.get_subprocess_specs(process_key)
    return ParsedProcess(
        key=process_key,
        name=spec.description or process_key,
        spec=spec,
        subprocess_specs=subprocess_specs,
        properties=process_properties(files, process_key),
        camunda_attrs=dict(parser.camunda_attrs),
    )


def process_properties(files: dict[str, str], process_key: str) -> dict[str, str]:
    """`spiffworkflow:properties` written directly on the <bpmn:process> element
    (e.g. startRoles, startForm, businessKeyPrefix)."""
    for filename, text in files.items():
        if is_dmn(filename):
            continue
        root = etree.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
        for proc in root.iter(f"{{{BPMN_NS}}}process"):
            if proc.get("id") == process_key:
                return element_properties(proc)
    return {}


def element_properties(element) -> dict[str, str]:
    """The `spiffworkflow:properties` of an lxml BPMN element, by name."""
    props = {}
    for prop in element.iterfind("{%s}extensionElements/*/*" % BPMN_NS):
        if etree.QName(prop).localname == "property" and prop.get("name"):
            props[prop.get("name")] = prop.get("value", "")
    return props


ENGLISH_NAME = "nameEn"   # the English name of a process or element, for the English UI


def english_names(files: dict[str, str]) -> list[tuple[str, str, str]]:
    """(element id, its name, its English name) of every element of these BPMN files that
    carries a `nameEn` property (`spiffworkflow:properties`, as on the process for its own
    name): what the English UI shows instead of the element's (Chinese) name. Two processes
    (a caller and the process it calls) may each have an element of the same id."""
    names = []
    for filename, text in sorted(files.items()):
        if is_dmn(filename):
            continue
        root = etree.fromstring(text.encode("utf-8") if isinstance(text, str) else text)
        for element in root.iter(f"{{{BPMN_NS}}}*"):
            english = element_properties(element).get(ENGLISH_NAME, "").strip() if element.get("id") else ""
            if english:
                names.append((element.get("id"), (element.get("name") or "").strip(), english))
    return names


LANE_RE = re.compile(r"^(?:(?P<level>[a-z_]+)\.)?(?P<role>[a-z_]+)(?::(?P<dept>[a-z_]+))?$")
LANE_IN_BRACKETS_RE = re.compile(r"[\[(（【]\s*((?:[a-z_]+\.)?[a-z_]+(?::[a-z_]+)?)\s*[\])）】]\s*$")


@dataclass(frozen=True)
class LaneRef:
    role: str
    level: str | None
    dept_type: str | None = None


def parse_lane(lane: str | None) -> LaneRef | None:
    """`town.center_dispatcher`, `grid_worker`, `county.petition_officer:xinfangju`
    (a role in a department of that type), or a display name ending in the code:
    `乡镇派单员 (town.center_dispatcher)`. None if nothing role-like is found."""
    if not lane:
        return None
    text = lane.strip()
    match = LANE_RE.match(text)
    if not match:
        bracket = LANE_IN_BRACKETS_RE.search(text)
        if not bracket:
            return None
        match = LANE_RE.match(bracket.group(1))
    return LaneRef(role=match.group("role"), level=match.group("level"), dept_type=match.group("dept"))


@dataclass
class UserTaskInfo:
    spec_name: str
    bpmn_id: str
    name: str
    lane: str | None
    form_key: str | None
    due: str | None
    assignee: str | None
    candidate_users: str | None
    candidate_groups: str | None


    @property
    def effective_lane(self) -> str | None:
        """What lane resolution reads: the lane, unless it names no role and the task says
        who works it otherwise — candidate groups, or an assignee / candidate users (a
        Camunda file whose lanes are named for people, not roles)."""
        ref = parse_lane(self.lane) if self.lane else None
        if self.lane and (ref is None or ref.role not in ROLES):
            if self.candidate_groups:
                return self.candidate_groups
            if self.assignee or self.candidate_users:
                return None
        return self.lane or self.candidate_groups


def user_task_info(task_spec, camunda_attrs: dict | None = None) -> UserTaskInfo:
    props = dict((getattr(task_spec, "extensions", None) or {}).get("properties", {}) or {})
    camunda_attrs = camunda_attrs or {}
    spec_file = getattr(getattr(task_spec, "_wf_spec", None), "file", None)
    attrs = camunda_attrs.get((spec_file, task_spec.bpmn_id))
    for key, value in (attrs if attrs is not None else camunda_attrs.get(task_spec.bpmn_id, {})).items():
        props.setdefault(key, value)
    return UserTaskInfo(
        spec_name=task_spec.name,
        bpmn_id=task_spec.bpmn_id,
        name=task_spec.bpmn_name or task_spec.bpmn_id,
        lane=task_spec.lane,
        form_key=form_key_of(props.get("formKey")),
        due=props.get("dueDate"),
        assignee=props.get("assignee"),
        candidate_users=props.get("candidateUsers"),
        candidate_groups=map_candidate_groups(props.get("candidateGroups")),
    )


# Camunda Modeler users name groups as people say them; each maps to our role codes
# (models.ROLES), optionally led by a level: "乡镇派单员" -> town.center_dispatcher.
ROLE_ALIASES = {
    "网格员": "grid_worker", "网格长": "grid_leader", "派单员": "center_dispatcher",
    "社会治理中心": "center_dispatcher", "部门承办人": "department_handler", "承办人": "department_handler",
    "信访干部": "petition_officer", "包案领导": "leader", "领导": "leader", "调解员": "mediator",
    "督查": "auditor", "流程设计员": "designer", "管理员": "admin",
    "gridworkers": "grid_worker", "gridleaders": "grid_leader", "dispatchers": "center_dispatcher",
    "handlers": "department_handler", "petitionofficers": "petition_officer", "leaders": "leader",
    "mediators": "mediator",
}
LEVEL_ALIASES = {"网格": "grid", "社区": "community", "村": "community", "乡镇": "town", "镇": "town",
                 "街道": "town", "县": "county", "区": "county", "市": "city"}


def map_candidate_groups(groups: str | None) -> str | None:
    """`camunda:candidateGroups` as a lane our resolver reads: each group as a lane code
    (`town.center_dispatcher`) or a known alias (`乡镇派单员`, `dispatchers`) mapped to one,
    comma-separated when there are several (any of them may work the task). Unmappable
    groups come back unchanged, for validation to report."""
    if not groups or not groups.strip():
        return groups
    return ",".join(_map_group(g.strip()) for g in groups.split(",") if g.strip())


def _map_group(group: str) -> str:
    ref = parse_lane(group)
    if ref is not None and ref.role in ROLES:
        return group
    text = group.replace(" ", "").replace("-", "").replace("_", "")
    for prefix, level in [("", None), *sorted(LEVEL_ALIASES.items(), key=lambda kv: -len(kv[0]))]:
        if text.startswith(prefix) and text[len(prefix):].lower() in ROLE_ALIASES:
            role = ROLE_ALIASES[text[len(prefix):].lower()]
            return f"{level}.{role}" if level else role
    return group


def lane_parts(lane: str) -> list[str]:
    """The lanes a lane names: one, or several comma-separated (candidate groups)."""
    return [part.strip() for part in lane.split(",") if part.strip()]


def form_key_of(value: str | None) -> str | None:
    """Our form key from a Camunda form reference: `embedded:app:forms/satisfaction.html`,
    `camunda-forms:deployment:satisfaction.form` -> `satisfaction`; plain keys unchanged."""
    if not value or ":" not in value and "/" not in value and "." not in value:
        return value
    last = value.strip().rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[0] if "." in last else last


def is_user_task(task_spec) -> bool:
    return isinstance(task_spec, UserTaskMixin)


def all_specs(parsed: ParsedProcess):
    """(process spec, task spec) for the top process and every subprocess."""
    for spec in [parsed.spec, *parsed.subprocess_specs.values()]:
        for task_spec in spec.task_specs.values():
            yield spec, task_spec


__all__ = [
    "ValidationException", "ParsedProcess", "parse_process", "parse_lane", "lane_parts", "LaneRef",
    "user_task_info", "is_user_task", "all_specs", "new_parser", "load_files",
]

"""What the case diagram highlights, computed from SQL rows only.

Completed elements and taken flows come from the case's history (`audit_event`
steps). Active elements come from its open work items — user tasks, which may
sit inside a process called by a call activity (grid_matter → mediation). The
page draws only the case's own process, so such a task is shown on the call
activity that (possibly through further calls) runs it, and every embedded
subprocess around an active element is marked active too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lxml import etree

from .bpmn import BPMN_NS, is_dmn

_PROCESS = f"{{{BPMN_NS}}}process"
_CALL_ACTIVITY = f"{{{BPMN_NS}}}callActivity"
_SEQUENCE_FLOW = f"{{{BPMN_NS}}}sequenceFlow"
_CONTAINERS = {f"{{{BPMN_NS}}}{tag}" for tag in ("subProcess", "transaction", "adHocSubProcess")}


@dataclass
class _Element:
    process: str
    name: str
    scopes: tuple[str, ...]        # the embedded subprocesses around it, innermost first
    called: str | None = None      # a call activity's calledElement


@dataclass
class DiagramModel:
    """What a deployed version's BPMN files say about their elements, parsed once."""
    flows: dict[tuple[str, str], str] = field(default_factory=dict)      # (source, target) -> flow id
    process_files: dict[str, str] = field(default_factory=dict)          # process id -> file name
    elements: dict[str, list[_Element]] = field(default_factory=dict)    # element id -> where it is defined
    # process id -> the call activities calling it: (call activity id, where it is)
    callers: dict[str, list[tuple[str, _Element]]] = field(default_factory=dict)

    def defined_in(self, element_id: str, process: str) -> _Element | None:
        return next((e for e in self.elements.get(element_id, ()) if e.process == process), None)

    @property
    def top_processes(self) -> set[str]:
        """The processes no call activity of these files calls: the ones a case runs itself."""
        return set(self.process_files) - set(self.callers)


_MODELS: dict[tuple, DiagramModel] = {}   # a deployed version's files never change: parse them once


def diagram_model(files: dict[str, str]) -> DiagramModel:
    key = tuple(sorted((name, len(text), hash(text)) for name, text in files.items()))
    model = _MODELS.get(key)
    if model is None:
        if len(_MODELS) > 256:
            _MODELS.clear()
        model = _MODELS[key] = _build_model(files)
    return model


def _build_model(files: dict[str, str]) -> DiagramModel:
    model = DiagramModel()
    for name, text in sorted(files.items()):
        if is_dmn(name):
            continue
        root = etree.fromstring(text.encode("utf-8"))
        for flow in root.iter(_SEQUENCE_FLOW):
            model.flows.setdefault((flow.get("sourceRef"), flow.get("targetRef")), flow.get("id"))
        for process in root.iter(_PROCESS):
            pid = process.get("id")
            model.process_files.setdefault(pid, name)
            _collect(model, process, pid, ())
    return model


def _collect(model: DiagramModel, parent, process: str, scopes: tuple[str, ...]) -> None:
    for child in parent:
        if not isinstance(child.tag, str):
            continue                                   # comments, processing instructions
        element_id = child.get("id")
        if element_id:
            called = child.get("calledElement") if child.tag == _CALL_ACTIVITY else None
            element = _Element(process, child.get("name") or element_id, scopes, called)
            model.elements.setdefault(element_id, []).append(element)
            if called:
                model.callers.setdefault(called, []).append((element_id, element))
        inner = (element_id,) + scopes if child.tag in _CONTAINERS and element_id else scopes
        _collect(model, child, process, inner)


def flow_index(files: dict[str, str]) -> dict[tuple[str, str], str]:
    """(sourceRef, targetRef) -> sequence flow id, across the version's BPMN files."""
    return diagram_model(files).flows


def process_file(files: dict[str, str], process_key: str) -> str | None:
    """The file that defines process `process_key` (not merely calls it: a caller's
    call activity may carry the called process's id as its own)."""
    return diagram_model(files).process_files.get(process_key)


def highlights(files: dict[str, str], path: list[tuple[str | None, str]], active: list[str],
               process_key: str | None = None) -> dict:
    """completed / flows / active element ids of the case's own diagram, and `in_called`:
    for each active task inside a called process, the call activities it runs under
    (outermost first) and the task, for a "进行中：多元调解 → 征询当事人调解意愿" hint.

    `process_key` is the case's process; without it, the process of these files that
    nothing here calls (a deployed version holds its process and what it calls)."""
    model = diagram_model(files)
    completed, flows = [], []
    for came_from, element in path:
        if element not in completed:
            completed.append(element)
        flow = model.flows.get((came_from, element)) if came_from else None
        if flow and flow not in flows:
            flows.append(flow)
    tops = {process_key} if process_key else model.top_processes
    marked, in_called = [], []
    for spec_id in active:
        defined = model.elements.get(spec_id, [])
        own = next((e for e in defined if e.process in tops), None)
        if own is not None or not defined:
            marked.append(spec_id)                    # an id the files do not define passes through
            marked.extend(own.scopes if own else ())
            continue
        for chain in _call_chains(model, {e.process for e in defined}, tops, path):
            (outer_id, outer), *_ = chain
            marked.append(outer_id)
            marked.extend(outer.scopes)
            in_called.append({"via": [{"id": call_id, "name": call.name} for call_id, call in chain],
                              "task": {"id": spec_id, "name": _name_in(defined, chain[-1][1].called)}})
    return {"completed": completed, "flows": flows, "active": list(dict.fromkeys(marked)),
            "in_called": in_called}


def _call_chains(model: DiagramModel, processes: set[str], tops: set[str], path) -> list[list[tuple[str, _Element]]]:
    """The call activities (outermost first) through which a top process runs one of
    `processes`. Where that leaves several answers (a process called from two places,
    a task id two called processes share), the ones the history entered and has not
    left yet; all of them if the history cannot tell."""
    chains, climbing = [], set()

    def climb(called: str, below: list):
        if called in climbing:                         # a process calling itself: stop, no answer there
            return
        climbing.add(called)
        for call_id, call in model.callers.get(called, []):
            if call.process in tops:
                chains.append([(call_id, call)] + below)
            else:
                climb(call.process, [(call_id, call)] + below)
        climbing.discard(called)

    for process in sorted(processes):
        climb(process, [])
    if len(chains) > 1:
        inside = [chain for chain in chains if all(_inside(model, call_id, path) for call_id, _call in chain)]
        chains = inside or chains
    return chains


def _inside(model: DiagramModel, call_id: str, path) -> bool:
    """The history reached call activity `call_id` (a step on a flow into it) after it last completed."""
    last_in = max((i for i, (_came, el) in enumerate(path) if (el, call_id) in model.flows), default=-1)
    last_out = max((i for i, (_came, el) in enumerate(path) if el == call_id), default=-1)
    return last_in > last_out


def _name_in(defined: list[_Element], process: str) -> str:
    return next((e.name for e in defined if e.process == process), defined[0].name)


_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)


def relabel(xml: str, name_for: Callable[[str, str, str], str | None]) -> str:
    """The diagram's XML with each named BPMN element's name as `name_for(tag, id, name)`
    gives it (tag without its namespace: `lane`, `userTask` …): the case page draws the
    diagram in the reader's language. Unchanged text when nothing changes."""
    root = etree.fromstring(xml.encode("utf-8"), _SAFE_PARSER)
    changed = False
    for element in root.iter(f"{{{BPMN_NS}}}*"):
        name, element_id = element.get("name"), element.get("id")
        if not (name and element_id):
            continue
        new = name_for(etree.QName(element).localname, element_id, name)
        if new and new != name:
            element.set("name", new)
            changed = True
    return etree.tostring(root, encoding="unicode") if changed else xml

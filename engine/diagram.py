"""What the case diagram highlights, computed from the SQL history only."""
from __future__ import annotations

from lxml import etree

from .bpmn import BPMN_NS, is_dmn


_FLOW_INDEXES: dict[tuple, dict] = {}   # a deployed version's files never change: parse them once


def flow_index(files: dict[str, str]) -> dict[tuple[str, str], str]:
    """(sourceRef, targetRef) -> sequence flow id, across the version's BPMN files."""
    key = tuple(sorted((name, len(text), hash(text)) for name, text in files.items()))
    index = _FLOW_INDEXES.get(key)
    if index is None:
        if len(_FLOW_INDEXES) > 256:
            _FLOW_INDEXES.clear()
        index = _FLOW_INDEXES[key] = _build_flow_index(files)
    return index


def _build_flow_index(files: dict[str, str]) -> dict[tuple[str, str], str]:
    index = {}
    for name, text in files.items():
        if is_dmn(name):
            continue
        root = etree.fromstring(text.encode("utf-8"))
        for flow in root.iter(f"{{{BPMN_NS}}}sequenceFlow"):
            index.setdefault((flow.get("sourceRef"), flow.get("targetRef")), flow.get("id"))
    return index


def process_file(files: dict[str, str], process_key: str) -> str | None:
    for name, text in files.items():
        if not is_dmn(name) and f'id="{process_key}"' in text:
            return name
    return None


def highlights(files: dict[str, str], path: list[tuple[str | None, str]], active: list[str]) -> dict:
    index = flow_index(files)
    completed, flows = [], []
    for came_from, element in path:
        if element not in completed:
            completed.append(element)
        flow = index.get((came_from, element)) if came_from else None
        if flow and flow not in flows:
            flows.append(flow)
    return {"completed": completed, "flows": flows, "active": list(dict.fromkeys(active))}

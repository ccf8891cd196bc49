"""Where a dispatch form's department choices send the matter, told one way by the task page,
the API's form description (GET /api/v1/tasks/{id}, the start forms of GET /api/v1/processes)
and the designer's form preview: a town without 住建 sends a 住建 task to the county's bureau,
and an official (or the app) should know before submitting, not find it out afterwards."""
from __future__ import annotations

from engine.service import department_fields

from .i18n import MESSAGES_EN

# the general rule, for a form shown with no task (a start form, the designer's preview): the
# place, hence the unit, is known only once a case is at a dispatcher's task
RULE = "承办单位按案件所在辖区确定：本级没有的部门派至上级的该部门（如县住建局），无人承办的转派单员。"
OTHER_PLACE = "本级无此部门，将派至{unit}"
NOBODY = "无此部门，将转派单员"


def _text(lang: str, zh: str, **values) -> str:
    text = MESSAGES_EN.get(zh, zh) if lang == "en" else zh
    return text.format(**values) if values else text


def department_routing(form, places: dict | None, lang: str) -> dict | None:
    """None for a form without department choices; else {"fields": the department fields'
    names, "rule": how the unit is chosen, "choices": {choice value: {"unit": the unit a task
    for it goes to (None: nobody handles it, it goes to the dispatchers), "own_place": whether
    that unit is of the dispatcher's own place, "note": what to add to the choice's label
    (None: a department of one's own place)}}}. `places` is `TaskDetail.department_places`
    (the engine's `_department_places`); None, or {} for someone who may not work the task,
    gives the rule alone."""
    names = [f.name for f in department_fields(form)]
    if not names:
        return None
    choices = {}
    for value, (unit, own) in (places or {}).items():
        note = None
        if unit is None:
            note = _text(lang, NOBODY)
        elif not own:
            note = _text(lang, OTHER_PLACE, unit=unit)
        choices[value] = {"unit": unit, "own_place": bool(own), "note": note}
    return {"fields": names, "rule": _text(lang, RULE), "choices": choices}

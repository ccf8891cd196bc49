"""The inbox: my tasks and the unclaimed tasks of my roles, sorted by due date.

The service runs the query (jurisdiction included); this view only turns the
GET parameters into `InboxFilters`, pages through the rows and offers the
filter choices (deployed processes and their user tasks).
"""
from __future__ import annotations

import math

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required
from engine.service import InboxFilters

from .extensions import service
from .tasks import COLOURS

bp = Blueprint("inbox", __name__)

PAGE_SIZE = 50


def process_choices():
    """The latest version of each deployed process and its user tasks, for the filter selects."""
    return service().processes()


def _page() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


@bp.route("/inbox")
@login_required
def index():
    args = {
        "process": (request.args.get("process") or "").strip(),
        "task": (request.args.get("task") or "").strip(),
        "colour": (request.args.get("colour") or "").strip(),
        "overdue": "1" if request.args.get("overdue") in ("1", "on", "true") else "",
        "q": (request.args.get("q") or "").strip()[:40],
    }
    if args["colour"] not in COLOURS:
        args["colour"] = ""
    page = _page()
    filters = InboxFilters(process_key=args["process"] or None, spec_id=args["task"] or None,
                           colour=args["colour"] or None, overdue=bool(args["overdue"]),
                           business_key=args["q"] or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    rows, total = service().inbox_page(current_user.id, filters)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    processes = process_choices()
    names = {p.key: p.name for p in processes}
    kept = {k: v for k, v in args.items() if v}  # the filters prev/next links keep
    return render_template("inbox.html", rows=rows, total=total, page=page, pages=pages,
                           page_size=PAGE_SIZE, args=args, kept=kept, processes=processes,
                           process_names=names, filtered=bool(kept))

"""UI language: zh-CN by default, English by a switch.

The templates are written in Chinese (the officials' language) and wrapped in
`_()`; `MESSAGES_EN` maps each to English. A tiny catalogue instead of
Flask-Babel: the product has two languages, its form labels already carry both
(forms/*.yaml), and this needs no compile step for .mo files.
`tests/test_web_pages.py` fails if a `_()` string has no English entry.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import current_app, g, request, session

from engine.clock import CHINA
from engine.notifications import PROCESS_FAILED, PROCESS_FAILED_AT_START

LANGS = ("zh", "en")

MESSAGES_EN: dict[str, str] = {
    # layout
    "网格化治理工作平台": "Grid Governance Workflow",
    "收件箱": "Inbox",
    "{label}（{note}）": "{label} ({note})",
    # web/department_routing.py
    "本级无此部门，将派至{unit}": "none here: goes to {unit}",
    "无此部门，将转派单员": "no such department: goes to the dispatchers",
    "承办单位按案件所在辖区确定：本级没有的部门派至上级的该部门（如县住建局），无人承办的转派单员。":
        "The unit is chosen by where the case is: a department the level lacks goes to the level above "
        "(e.g. the county's housing bureau); one nobody handles goes to the dispatchers.",
    "上报/发起": "Report / start",
    "退出": "Log out",
    "登录": "Log in",
    "用户名": "Username",
    "密码": "Password",
    "用户名或密码不正确，请重新输入。": "Wrong username or password; please try again.",
    "超过 {n} 分钟未操作，已自动退出，请重新登录。": "No activity for {n} minutes: you were logged out; please log in again.",
    "修改密码": "Change password",
    "此账号的密码已修改，请用新密码重新登录。": "This account's password was changed: log in with the new one.",
    "您仍在使用管理员设置的初始密码。": "You are still using the initial password an administrator gave you.",
    "您的密码已使用超过 {n} 天。": "You have used your password for more than {n} days.",
    "请修改为只有您知道的密码。": "Change it to one only you know.",
    "当前密码": "Current password",
    "新密码": "New password",
    "再次输入新密码": "New password again",
    "密码未修改，请按提示修改后重试。": "The password was not changed; correct what is marked and try again.",
    "密码已修改，下次登录请使用新密码。": "Password changed: log in with the new one next time.",
    "新密码至少 {n} 个字符，包含小写字母、大写字母、数字、其他符号中的至少三类，且不能包含用户名。":
        "At least {n} characters, with three of: lower case, upper case, digits, other characters; "
        "not containing your login name.",
    "演示账号的密码均为 demo123。": "Every demo account's password is demo123.",
    "出错了": "Something went wrong",
    "返回收件箱": "Back to the inbox",
    "页面不存在。": "This page does not exist.",
    "您无权查看此内容。": "You may not see this.",
    "请求无效，请刷新页面后重试。": "The request was not valid; refresh the page and try again.",
    "上传的文件太大。": "The upload is too large.",
    "服务器内部错误，已记录。请稍后重试。": "Internal error; it has been logged. Please try again later.",
    "聚焦当前环节与路径": "Focus on the current step and the path",
    "显示全图": "Whole diagram",
    "滚轮缩放，拖动平移。": "Scroll to zoom, drag to pan.",
    "数据库暂时无法使用，本次提交没有保存；请稍后重试。":
        "The database is unavailable at the moment; nothing was saved. Please try again shortly.",
    "页面已过期，请刷新后重新提交。": "The page has expired; refresh it and submit again.",
    "语言": "Language",
    # inbox, task, start and case pages (web/inbox.py, web/tasks.py, web/cases.py)
    "我的待办": "My tasks",
    "共 {n} 项": "{n} in total",
    "流程": "Process",
    "任务": "Task",
    "全部": "All",
    "风险等级": "Severity colour",
    "案件编号": "Case no.",
    "只看已超期": "Overdue only",
    "筛选": "Filter",
    "清除筛选": "Clear filters",
    "网格/地点": "Grid / place",
    "办理时限": "Due",
    "认领人": "Claimed by",
    "未认领": "Unclaimed",
    "操作": "Actions",
    "没有符合筛选条件的任务。": "No task matches these filters.",
    "暂无待办任务。": "Nothing to do right now.",
    "分页": "Pages",
    "上一页": "Previous page",
    "下一页": "Next page",
    "第 {page} / {pages} 页": "Page {page} of {pages}",
    "蓝": "Blue",
    "黄": "Yellow",
    "橙": "Orange",
    "红": "Red",
    "网格员": "Grid worker",
    "网格长": "Grid leader",
    "派单员": "Centre dispatcher",
    "部门承办人": "Department handler",
    "信访干部": "Petition officer",
    "包案领导": "Leader in charge",
    "调解员": "Mediator",
    "督查": "Auditor",
    "流程设计员": "Process designer",
    "管理员": "Administrator",
    "生成任务": "Task created",
    "认领": "Claim",
    "退回": "Release",
    "办理": "Done",
    "流转": "Step",
    "无人承办·转上级": "Nobody holds the lane · sent up a level",
    "取消": "Cancelled",
    "上传附件": "File added",
    "办结": "Closed",
    "办理中": "Open",
    "已办结": "Closed",
    "已撤销": "Withdrawn",
    "待办": "Open",
    "已办理": "Completed",
    "您已提交过“{name}”，本次未重复提交。": "You had already submitted “{name}”; nothing was submitted twice.",
    "已取消": "Cancelled",
    "（未知用户）": "(unknown user)",
    "指定人员": "Named people",
    "此项为必填。": "This field is required.",
    "此项不能为空。": "This field must not be empty.",
    "每个选项只能选一次。": "Choose each option once.",
    "每个文件只能附一次。": "Attach each file once.",
    "最多附 {n} 个文件。": "At most {n} files.",
    "找不到所附文件 {id}，请重新上传。": "The attached file {id} was not found; upload it again.",
    "未督办：{why}": "Not urged: {why}",
    "请勾选要迁移的案件。": "Tick the cases to move.",
    "未改派：{why}": "Not reassigned: {why}",
    "按上面所作的选择，此项为必填。": "Required by the choice made above.",
    "按上面所填的内容，此项为必填。": "Required by what was filled in above.",
    "至少填写 {n} 个字。": "Enter at least {n} characters.",
    "最多填写 {n} 个字。": "Enter at most {n} characters.",
    "长度须在 {a} 到 {b} 个字之间。": "Enter between {a} and {b} characters.",
    "请填写整数。": "Enter a whole number.",
    "请填写数字。": "Enter a number.",
    "请填写有效的日期和时间。": "Enter a valid date and time.",
    "找不到该流程，请从已部署的流程中选择。": "No such process: choose a deployed one.",
    "请填写有效的日期。": "Enter a valid date.",
    "不能晚于当前时间，请填写实际发生的日期或时间。": "Must not be in the future: enter when it actually happened.",
    "请选择“是”或“否”。": "Choose Yes or No.",
    "请从给出的选项中选择。": "Choose one of the options given.",
    "请至少选择一项。": "Choose at least one.",
    "取值无效。": "Not a usable value.",
    "请填写文字。": "Enter text.",
    "不能早于开始日期。": "Must not be before the start date.",
    "时间段最长十年。": "At most ten years.",
    "须为以下之一：{values}": "One of: {values}",
    "找不到该用户。": "No such user.",
    "找不到在用的该用户名。": "No active official has this username.",
    "找不到该辖区。": "No such jurisdiction.",
    "请选择网格。": "Choose a grid.",
    "请选择辖区（市、县、镇、社区或网格），不能选职能部门。":
        "Choose a jurisdiction (city, county, town, community or grid), not a department.",
    "请选择一个非空的文件。": "Choose a file that is not empty.",
    "文件太多。": "Too many files.",
    "格式不正确。": "The format is not right.",
    "须在 {a} 到 {b} 之间。": "Must be between {a} and {b}.",
    "不能小于 {a}。": "Must be at least {a}.",
    "不能大于 {b}。": "Must be at most {b}.",
    "此项不属于本表单。": "This field is not part of the form.",
    "填写的内容无效。": "This value is not valid.",
    "文件「{name}」是空的。": "The file '{name}' is empty.",
    "文件「{name}」不是可接受的类型：请上传 JPEG、PNG、GIF、WebP 图片（不超过 10 MB）或 PDF 文件（不超过 20 MB）。":
        "The file '{name}' is not an accepted type: upload a JPEG, PNG, GIF or WebP image (up to 10 MB) "
        "or a PDF (up to 20 MB).",
    "文件「{name}」的文件名为 {suffix}，但内容是 {kind}；请改正文件名或重新选择文件。":
        "The file '{name}' is named {suffix} but holds {kind}; correct the file name or choose the file again.",
    "文件「{name}」太大：此类文件不能超过 {limit} MB。": "The file '{name}' is too large: the limit for this type is {limit} MB.",
    "文件「{name}」有两处问题：内容是 {kind}，大小为 {size}，超过此类文件的上限 {limit} MB；文件名为 {suffix}，与内容不符。请选择不超过 {limit} MB 的文件，并改正文件名。":
        "The file '{name}' has two problems: it is {size}, over the {limit} MB limit for {kind}, and it is named "
        "{suffix} but holds {kind}. Choose a file of at most {limit} MB and correct the file name.",
    "已提交：{name}": "Submitted: {name}",
    "已认领：{name}": "Claimed: {name}",
    "已退回：{name}（其他同事可认领）": "Released: {name} (colleagues can claim it now)",
    "已超期": "overdue",
    "24小时内到期": "due within 24 hours",
    "暂无附件。": "No files yet.",
    "原承办岗位无人，已转上级派单员": "Nobody holds this lane; sent to the dispatchers one level up",
    "填报内容": "What was entered",
    "您无权查看本案的完整记录。": "You may not see this case's full record.",
    "所在网格": "Grid",
    "案件状态": "Case status",
    "案件": "Case",
    "案件概要": "Case summary",
    "上报人": "Reported by",
    "上报时间": "Reported at",
    "发起人": "Started by",
    "发起时间": "Started at",
    "办结时间": "Closed at",
    "事项信息": "Details",
    "当前环节": "Current steps",
    "承办": "Held by",
    "当前没有待办任务。": "No open tasks at the moment.",
    "案件已办结。": "The case is closed.",
    "流程图": "Process diagram",
    "流程图加载失败，请刷新页面重试。": "The diagram failed to load; refresh the page to try again.",
    "显示流程图需要启用 JavaScript。": "The diagram needs JavaScript.",
    "已完成环节": "Completed steps",
    "已走路径": "Path taken",
    "此流程没有可显示的流程图。": "This process has no diagram to show.",
    "进行中：{where}": "In progress: {where}",
    "附件": "Files",
    "补充附件": "Add files",
    "照片或扫描件：JPEG、PNG、GIF、WebP（不超过 10 MB）或 PDF（不超过 20 MB）。":
        "Photos or scans: JPEG, PNG, GIF, WebP (up to 10 MB) or PDF (up to 20 MB).",
    "上传": "Upload",
    "办理记录": "History",
    "请选择事项所在的网格。": "Choose the grid where the matter is.",
    "已提交，案件编号 {key}": "Submitted; case number {key}",
    "您填写的内容未提交，已为您保留：重新登录后回到表单，核对后再提交。":
        "What you entered was not submitted and has been kept: log in again to go back to the form, check it and submit.",
    "回到表单": "Back to the form",
    "已重新登录": "Logged in again",
    "退出前填写的内容已保留。请回到表单，核对后再提交。":
        "What you entered before you were logged out has been kept. Go back to the form, check it and submit.",
    "所选的照片或附件未能保留，请在表单中重新选择。":
        "The photos or files you chose could not be kept: choose them again in the form.",
    "这是您退出前填写的内容，尚未提交；请核对后提交。":
        "This is what you entered before you were logged out; it has not been submitted. Check it and submit.",
    "此表单已提交过，案件编号 {key}，未重复上报。如需上报另一事项，请重新打开上报页面。":
        "This form was already submitted as case {key}; nothing was reported twice. To report another matter, open the report form again.",
    "据此上报网格事项": "Report a grid matter from this visit",
    "走访中发现需要处置的矛盾纠纷或隐患：以本次走访的情况上报，所填内容可修改。": "A dispute or hazard found on the visit: report it with what the visit recorded; every field can be changed.",
    "内容取自 {key}，请核对后上报。": "Filled in from {key}; check it before you report.",
    "请选择要上传的文件。": "Choose the files to upload.",
    "已上传 {n} 个文件。": "{n} file(s) uploaded.",
    "提交未成功，请按提示修改标出的内容后重新提交。": "Not submitted: correct the marked fields and submit again.",
    "如已选择文件，请重新选择。": "If you chose files, choose them again.",
    "请选择": "Choose…",
    "可在以下网格发起：": "You can start it in: ",
    "、": ", ",
    "填写上报": "Fill in the report",
    "您当前的岗位没有可发起的流程。": "None of your roles can start a process.",
    "任务状态": "Task status",
    "此任务尚未认领：认领后其他同事不会重复办理。": "Nobody has claimed this task yet: claim it so colleagues do not work it twice.",
    "提交": "Submit",
    "此任务{status}，仅供查看。": "Task status: {status}. Shown read-only.",
    "此任务不在您的待办范围内，仅供查看。": "This task is not yours to work; shown read-only.",
    # supervision board, notifications, incidents (web/supervision.py)
    "督办台": "Supervision",
    "督办": "Urge",
    "改派": "Reassign",
    "退回组内": "back to the group",
    "改派给（用户名或姓名）": "Reassign to (username or name)",
    "留空：退回组内": "empty: back to the group",
    "改派理由": "Reason for reassigning",
    "改派人：{name}": "Reassigned by {name}",
    "已改派：{name}": "Reassigned: {name}",
    "已退回组内：{name}（同岗位人员可认领）": "Back to the group: {name} (anyone in the role may claim it)",
    "通知": "Notifications",
    "条未读": "unread",
    "系统异常": "Incidents",
    "异常已处理": "Incident resolved",
    "上级已督办，请尽快办理": "A supervisor has urged this task; please handle it soon",
    "督办 ×{n}": "Urged ×{n}",
    "新任务": "New task",
    "催办提醒": "Reminder",
    "升级提醒": "Escalation",
    "已督办：{name}（第 {n} 次）": "Urged: {name} (time {n})",
    "已将 {n} 条通知标为已读": "{n} notification(s) marked read",
    "已处理，案件的定时器已重新启用": "Resolved; the case's timers are running again",
    "辖区内已超期 {a} 项，24小时内到期 {b} 项": "In your jurisdiction: {a} overdue, {b} due within 24 hours",
    "辖区内已超期至少 {a} 项（确切数字见统计看板）": "In your jurisdiction: at least {a} overdue (the dashboard has the exact figure)",
    "辖区内已超期 {a} 项，24小时内到期至少 {b} 项": "In your jurisdiction: {a} overdue, at least {b} due within 24 hours",
    "仅显示最紧急的 {n} 项。": "Only the {n} most urgent are shown.",
    "已认领": "Claimed",
    "超期 {a} · 将到期 {b}": "{a} overdue · {b} due soon",
    "已督办": "Urged",
    "{n} 次": "{n}×",
    "本人承办": "Yours",
    "督办意见": "Note to the holder",
    "督办意见（可选）": "Note (optional)",
    "您填写的督办意见（未保存，可复制）": "The note you typed (not saved; copy it)",
    "辖区内没有超期或24小时内到期的任务。": "Nothing in your jurisdiction is overdue or due within 24 hours.",
    "共 {n} 条，未读 {m} 条": "{n} in total, {m} unread",
    "全部标为已读": "Mark all read",
    "我的通知": "My notifications",
    "时间": "Time",
    "类型": "Type",
    "内容": "Content",
    "未读": "unread",
    "任务已办结": "task done",
    "任务已撤销": "task withdrawn",
    # incident subjects (engine/notifications.py PROCESS_FAILED, PROCESS_FAILED_AT_START)
    "流程运行出错：{step}": "The process failed: {step}",
    "流程运行出错：发起 {process}": "The process failed: starting {process}",
    "督办人：{name}": "Urged by {name}",
    "标为已读": "Mark read",
    "暂无通知。": "No notifications.",
    "未处理 {n} 项": "{n} open",
    "定时器多次触发失败的案件在此列出，其定时器已暂停。排除原因（如修正并重新部署流程）后点击“标记为已处理”，系统将立即重新触发。":
        "Cases whose timers failed repeatedly are listed here; their timers are paused. Fix the cause "
        "(for example correct and redeploy the process), then press Mark resolved: the timers fire again at once.",
    "错误": "Error",
    "尝试次数": "Attempts",
    "发生时间": "Raised at",
    "定时器": "Timer",
    "标记为已处理": "Mark resolved",
    "没有未处理的异常。": "No open incidents.",
}


def _merge_area_catalogues() -> None:
    """Each newer area keeps its English in `web/messages/<area>.py` (a dict `MESSAGES`),
    so areas built side by side never edit the same catalogue."""
    import importlib
    import pkgutil

    from web import messages

    for mod in pkgutil.iter_modules(messages.__path__):
        area = importlib.import_module(f"web.messages.{mod.name}")
        for zh, en in area.MESSAGES.items():
            if MESSAGES_EN.setdefault(zh, en) != en:
                raise ValueError(f"web/messages/{mod.name}.py: '{zh}' is already translated differently")


_merge_area_catalogues()


def current_lang() -> str:
    lang = session.get("lang") if session else None
    if lang in LANGS:
        return lang
    best = request.accept_languages.best_match(["zh", "zh-CN", "en"]) if request else None
    return "en" if best == "en" else "zh"


def gettext(text: str, **values) -> str:
    if current_lang() == "en":
        text = MESSAGES_EN.get(text, text)
    return text.format(**values) if values else text


def label(value, lang: str | None = None) -> str:
    """A {zh, en} label from a form definition in the current language."""
    if isinstance(value, dict):
        return value.get(lang or current_lang()) or value.get("zh") or ""
    return value or ""


def _names():
    """This request's catalogue of the processes' English names (engine/english_names.py)."""
    catalogue = g.get("english_names")
    if catalogue is None:
        catalogue = g.english_names = current_app.extensions["gridflow"].english_names.catalogue()
    return catalogue


def process_name(process_key: str | None, name: str | None) -> str:
    """A process's name in the current language: its English name (`nameEn`) in English."""
    return (_names().process(process_key, name) if current_lang() == "en" else name) or ""


def element_name(process_key: str | None, element_id: str | None, name: str | None) -> str:
    """A BPMN element's name (a task, an event …) in the current language."""
    return (_names().element(process_key, element_id, name) if current_lang() == "en" else name) or ""


def named_element(process_key: str | None, name: str | None) -> str:
    """A text that kept only an element's name (a notice's subject) in the current language."""
    return (_names().named(process_key, name) if current_lang() == "en" else name) or ""


def notice_subject(row) -> str:
    """A notice's subject in the current language: the element it names, or an incident's
    `流程运行出错：…` with the step or process in English."""
    subject, key = row.notification.subject, row.process_key
    if current_lang() != "en" or row.notification.kind != "incident":
        return named_element(key, subject)
    at_start, at_step = PROCESS_FAILED_AT_START.split("{")[0], PROCESS_FAILED.split("{")[0]
    if subject.startswith(at_start):
        process = subject[len(at_start):]
        return gettext(PROCESS_FAILED_AT_START, process=process_name(process, process))
    if subject.startswith(at_step):
        return gettext(PROCESS_FAILED, step=named_element(key, subject[len(at_step):]))
    return subject


def task_name(item) -> str:
    """A work item's task name in the current language."""
    return element_name(item.process_key, item.spec_id, item.name)


def local_time(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """UTC in the database; China Standard Time on screen."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(CHINA).strftime(fmt)


def init_app(app):
    app.jinja_env.globals.update(_=gettext, current_lang=current_lang, label=label, LANGS=LANGS,
                                 process_name=process_name, element_name=element_name, task_name=task_name,
                                 notice_subject=notice_subject)
    app.jinja_env.filters["local_time"] = local_time


# ------------------------------------------------------------ field messages

_MESSAGES = [
    (re.compile(r"^Missing data for required field\.$"), lambda m: ("此项为必填。", {})),
    (re.compile(r"^Field may not be null\.$"), lambda m: ("此项为必填。", {})),
    (re.compile(r"^must not be empty$"), lambda m: ("此项不能为空。", {})),
    (re.compile(r"^required by the choice of \w+$"), lambda m: ("按上面所作的选择，此项为必填。", {})),
    (re.compile(r"^required by the value of \w+$"), lambda m: ("按上面所填的内容，此项为必填。", {})),
    (re.compile(r"^Shorter than minimum length (\d+)\.$"), lambda m: ("至少填写 {n} 个字。", dict(n=m[1]))),
    (re.compile(r"^Longer than maximum length (\d+)\.$"), lambda m: ("最多填写 {n} 个字。", dict(n=m[1]))),
    (re.compile(r"^Length must be between (\d+) and (\d+)\.$"),
     lambda m: ("长度须在 {a} 到 {b} 个字之间。", dict(a=m[1], b=m[2]))),
    (re.compile(r"^Not a valid integer\.$"), lambda m: ("请填写整数。", {})),
    (re.compile(r"^Not a valid number\.$|^Special numeric values \(nan or infinity\) are not permitted\.$"),
     lambda m: ("请填写数字。", {})),
    (re.compile(r"^Not a valid (?:\w+ )?datetime\.$|^\".*\" cannot be formatted as a datetime\.$"),
     lambda m: ("请填写有效的日期和时间。", {})),
    (re.compile(r"^Not a valid date\.$"), lambda m: ("请填写有效的日期。", {})),
    (re.compile(r"^must not be in the future$"), lambda m: ("不能晚于当前时间，请填写实际发生的日期或时间。", {})),
    (re.compile(r"^Not a valid boolean\.$"), lambda m: ("请选择“是”或“否”。", {})),
    (re.compile(r"^must be one of: |^One or more of the choices you made was not in: "),
     lambda m: ("请从给出的选项中选择。", {})),
    (re.compile(r"^choose at least one$"), lambda m: ("请至少选择一项。", {})),
    (re.compile(r"^choose each option once$"), lambda m: ("每个选项只能选一次。", {})),
    (re.compile(r"^attach each file once$"), lambda m: ("每个文件只能附一次。", {})),
    (re.compile(r"^at most (\d+) files$"), lambda m: ("最多附 {n} 个文件。", dict(n=m[1]))),
    (re.compile(r"^unknown attachment (\S{0,64})$"), lambda m: ("找不到所附文件 {id}，请重新上传。", dict(id=m[1]))),
    (re.compile(r"^does not match the required format$"), lambda m: ("格式不正确。", {})),
    (re.compile(r"^Must be greater than or equal to (\S+) and less than or equal to (\S+)\.$"),
     lambda m: ("须在 {a} 到 {b} 之间。", dict(a=m[1], b=m[2]))),
    (re.compile(r"^Must be greater than or equal to (\S+)\.$"), lambda m: ("不能小于 {a}。", dict(a=m[1]))),
    (re.compile(r"^Must be less than or equal to (\S+)\.$"), lambda m: ("不能大于 {b}。", dict(b=m[1]))),
    (re.compile(r"^Unknown field\.$"), lambda m: ("此项不属于本表单。", {})),
    (re.compile(r"^Not a valid (?:string|list)\.$"), lambda m: ("填写的内容无效。", {})),
    # the engine's own short field messages (query filters, 改派, uploads)
    (re.compile(r"^(?:not a usable value|unknown|bad text)$"), lambda m: ("取值无效。", {})),
    (re.compile(r"^required$"), lambda m: ("此项为必填。", {})),
    (re.compile(r"^not text$"), lambda m: ("请填写文字。", {})),
    (re.compile(r"^(?:not a date|YYYY-MM-DD|out of the calendar's range)$"), lambda m: ("请填写有效的日期。", {})),
    (re.compile(r"^(?:before the start date|must be after start)$"), lambda m: ("不能早于开始日期。", {})),
    (re.compile(r"^at most ten years$"), lambda m: ("时间段最长十年。", {})),
    (re.compile(r"^between ([\d,]+) and ([\d,]+)$"), lambda m: ("须在 {a} 到 {b} 之间。", dict(a=m[1], b=m[2]))),
    (re.compile(r"^one of (.+)$"), lambda m: ("须为以下之一：{values}", dict(values=m[1]))),
    (re.compile(r"^no such user$"), lambda m: ("找不到该用户。", {})),
    (re.compile(r"^(?:not a username|no such active official)$"), lambda m: ("找不到在用的该用户名。", {})),
    (re.compile(r"^no such jurisdiction$"), lambda m: ("找不到该辖区。", {})),
    (re.compile(r"^no such process$"), lambda m: ("找不到该流程，请从已部署的流程中选择。", {})),
    (re.compile(r"^must be a grid$"), lambda m: ("请选择网格。", {})),
    (re.compile(r"^must be a jurisdiction$"), lambda m: ("请选择辖区（市、县、镇、社区或网格），不能选职能部门。", {})),
    (re.compile(r"^(?:no file|empty file)$"), lambda m: ("请选择一个非空的文件。", {})),
    (re.compile(r"^too many files$"), lambda m: ("文件太多。", {})),
    (re.compile(r"^at most (\d+) characters$"), lambda m: ("最多填写 {n} 个字。", dict(n=m[1]))),
]


def read_stored(text: str | None, table) -> str:
    """A note the engine stored in English (a lane nobody holds, why a case cannot migrate …)
    as a Chinese reader reads it: the first of `table`'s (pattern, make) that matches; English
    readers, and notes no pattern knows, get it as stored."""
    if not text or current_lang() == "en":
        return text or ""
    for pattern, make in table:
        match = pattern.match(text)
        if match:
            return make(match)
    return text


def localise_message(message: str, lang: str | None = None) -> str:
    """A validator's (English) message in `lang` (the official's language by default);
    unknown ones unchanged."""
    for pattern, make in _MESSAGES:
        match = pattern.search(str(message))
        if match:
            text, values = make(match)
            if (lang or current_lang()) == "en":
                text = MESSAGES_EN.get(text, text)
            return text.format(**values) if values else text
    return str(message)


def localise_errors(fields: dict | None) -> dict[str, list[str]]:
    out = {}
    for name, messages in (fields or {}).items():
        if isinstance(messages, dict):
            messages = [m for v in messages.values() for m in (v if isinstance(v, list) else [v])]
        if not isinstance(messages, (list, tuple)):
            messages = [messages]
        out[name] = [localise_message(m) for m in messages]
    return out

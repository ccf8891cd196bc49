"""Case search by task within the chosen process: petition and consultation both have a
user task `review` (复查 and 结果研判); the task filter is read within the chosen process."""
import re

import pytest

from engine.search import CaseSearch, SearchFilters
from tests.helpers import login, work
from tests.test_audit_search import _token

G1 = "linxi-xinguang-g1"


def keys(service, **kw):
    return [r.case.business_key for r in CaseSearch(service).search("cf_dc", SearchFilters(**kw)).rows]


@pytest.fixture
def at_review(service, clock):
    """A consultation waiting at its `review` (结果研判) and a petition at its `review` (复查)."""
    consultation = service.start_case("consultation", G1, {
        "title": "新光小区电动车充电车棚建设", "background": "部分居民在楼道内私拉电线为电动车充电，既不安全又阻碍通行。",
        "raised_by": "residents", "raiser_name": "3号楼居民张某", "category": "public_facilities",
        "location": "新光小区3号楼至6号楼", "households": 240}, "lx_wgy1").business_key
    work(service, "lx_wgz1", "decide_topic", {"topic_decision": "accept", "decision_reason": "需业委会、物业和居民共同商定",
                                              "consult_format": "four_party"})
    work(service, "lx_wgy1", "research", {"findings": "走访住户86户，楼道私拉电线12处",
                                          "positions": "居民普遍支持；物业愿负责日常管理",
                                          "legal_advice": "使用公共收益须经业主大会表决", "draft_plan": "新建6处充电车棚"})
    work(service, "lx_wgz1", "meeting", {"participants": ["community", "owners_committee"], "meeting_date": "2026-03-10",
                                         "meeting_summary": "一致同意新建充电车棚", "meeting_outcome": "consensus",
                                         "agreed_plan": "新建6处充电车棚", "executor": "新光小区物业公司"})
    petition = service.start_case("petition", G1, {
        "channel": "leader_reception", "reception_leader": "lxx_ld1", "petitioner_name": "郑某",
        "subject": "urban_management", "title": "违建阻挡采光", "description": "邻居加盖二层违建，挡住信访人住房采光。",
        "repeat_of_rechecked": False}, "lxx_ld1").business_key
    work(service, "lxx_xf", "decide", {"acceptance": "accept", "department": "chengguan", "hard_case": False,
                                       "decision_reason": "受理，交县城管局办理", "notice_method": "in_person"})
    work(service, "lxx_cg", "handle", {"handling_result": "已下达限期拆除决定", "hard_case": False, "extension_days": 0})
    work(service, "lxx_cg", "written_reply", {"reply_content": "已认定违法建设并限期拆除。", "reply_date": "2026-03-02",
                                              "reply_method": "in_person"})
    work(service, "cf_xf", "review_request", {"review_requested_on": "2026-03-02", "review_reasons": "违建仍未拆除"})
    for key in (consultation, petition):
        assert [i.spec_id for i in service.get_case(key).open_items] == ["review"]
    return {"consultation": consultation, "petition": petition}


def test_the_task_filter_reads_a_name_within_the_chosen_process(service, at_review):
    # the id alone, no process: both processes' `review`
    assert set(keys(service, task="review")) == set(at_review.values())
    assert keys(service, process_key="petition", task="review") == [at_review["petition"]]
    assert keys(service, process_key="consultation", task="review") == [at_review["consultation"]]
    # a name is a task of the chosen process: consultation has no 复查, petition no 结果研判
    # (read across processes, each name pulled in the other's `review`, and its cases)
    assert keys(service, process_key="consultation", task="复查") == []
    assert keys(service, process_key="petition", task="结果研判") == []
    assert keys(service, process_key="petition", task="复查") == [at_review["petition"]]
    assert keys(service, process_key="consultation", task="结果研判") == [at_review["consultation"]]


def test_the_api_reads_the_task_within_the_process(client, at_review):
    headers = _token(client, "cf_dc")
    body = client.get("/api/v1/cases?process=consultation&task=复查", headers=headers).get_json()
    assert body["items"] == []
    body = client.get("/api/v1/cases?process=petition&task=review", headers=headers).get_json()
    assert [c["business_key"] for c in body["items"]] == [at_review["petition"]]


def options(html: str) -> list[tuple[str, str, bool]]:
    select = re.search(r'<select id="s-task" name="task">(.*?)</select>', html, re.S)[1]
    return [(value, label.strip(), bool(chosen)) for value, chosen, label in
            re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', select)]


def test_the_task_dropdown_lists_the_chosen_process_tasks_and_marks_one(client, at_review):
    login(client, "cf_dc")
    html = client.get("/audit/cases?process=petition&task=review").get_data(as_text=True)
    listed = options(html)
    assert [(v, label) for v, label, chosen in listed if chosen] == [("review", "复查")]
    assert "结果研判" not in {label for _v, label, _c in listed}        # consultation's task not offered
    assert at_review["petition"] in html and at_review["consultation"] not in html
    # no process chosen: every process's tasks under its name, the shared id marked once
    listed = options(client.get("/audit/cases?task=review").get_data(as_text=True))
    assert {"复查", "结果研判"} <= {label for _v, label, _c in listed}
    assert sum(chosen for *_rest, chosen in listed) == 1
    # a task the query names that the list lacks stays chosen as typed
    listed = options(client.get("/audit/cases?process=petition&task=decide_topic").get_data(as_text=True))
    assert ("decide_topic", "decide_topic", True) in listed

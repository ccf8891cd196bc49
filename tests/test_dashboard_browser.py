"""The dashboard in a real browser: charts drawn, drill-down clicked, screenshots
kept in test-artifacts/ (dashboard-*.png) for people to look at."""
from __future__ import annotations

import pytest

from engine.demo_history import DemoHistory
from tests.test_browser import browser, live_server, log_in, shot  # noqa: F401  (fixtures)

# the pages' scripts in Chromium: run once, in the PostgreSQL run (tests/conftest.py)
pytestmark = pytest.mark.sqlite_run_only   # once (tests/conftest.py)


def test_dashboard_with_charts_and_drill_down(service, clock, live_server, browser):  # noqa: F811
    DemoHistory(service, seed=11).run(60, months=6, end=clock.now())
    base = live_server
    page = log_in(browser, base, "lxx_ld1")
    page.click("nav a:has-text('统计看板')")
    page.wait_for_url(f"{base}/dashboard*")
    assert page.locator("h1").inner_text().startswith("统计看板 · 林西县")
    charts = page.locator("svg.chart")
    assert charts.count() >= 4
    assert page.locator("svg.chart rect").count() > 20           # bars, not empty frames
    assert page.locator("[data-kpi=closure_rate] strong").inner_text().endswith("%")
    shot(page, "dashboard-county")

    page.click("table[data-table=children] a.drill >> nth=0")
    page.wait_for_url("**node=linxizhen*")
    assert "林西镇" in page.locator("h1").inner_text()
    assert page.locator("nav.breadcrumb a:has-text('林西县')").count() == 1
    shot(page, "dashboard-town")

    with page.expect_download() as download:
        page.click("a:has-text('导出全部 (XLSX)')")
    assert download.value.suggested_filename.endswith("-all.xlsx")

    phone = log_in(browser, base, "lxz_pd", mobile=True)
    phone.goto(f"{base}/dashboard")
    assert phone.locator("svg.chart").count() >= 4
    shot(phone, "dashboard-town-phone")

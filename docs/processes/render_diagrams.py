"""Redraw docs/processes/<process>.png from processes/<process>.bpmn with bpmn-js.

    python docs/processes/render_diagrams.py                 # every processes/*.bpmn
    python docs/processes/render_diagrams.py petition ...    # just these

bpmn-js (the same viewer the case page uses, from node_modules) draws the diagram
in headless Chromium at zoom 1, and the whole diagram is captured with a 20 px
margin. Needs `npm ci` (bpmn-js) and Chromium (CHROMIUM, default /usr/bin/chromium).
Fails if bpmn-js reports an import warning, so a picture is never made of a diagram
the modeler would complain about.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "node_modules" / "bpmn-js" / "dist"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MARGIN = 20

PAGE = """<!doctype html><html><head><meta charset="utf-8">
<style>{css}
html, body {{ margin: 0; padding: 0; background: #fff; }}
#canvas {{ width: 100vw; height: 100vh; }}
</style></head><body><div id="canvas"></div><script>{js}</script></body></html>"""

IMPORT = """async (xml) => {
  const viewer = new BpmnJS({ container: '#canvas' });
  const result = await viewer.importXML(xml);
  const canvas = viewer.get('canvas');
  canvas.zoom(1);
  const box = canvas.viewbox().inner;
  window.__viewer = viewer;
  return { warnings: (result.warnings || []).map(w => String(w.message || w)),
           x: box.x, y: box.y, width: box.width, height: box.height };
}"""


def render(page, bpmn: Path, out: Path) -> None:
    box = page.evaluate(IMPORT, bpmn.read_text(encoding="utf-8"))
    if box["warnings"]:
        raise SystemExit(f"{bpmn.name}: bpmn-js import warnings: {json.dumps(box['warnings'], ensure_ascii=False)}")
    width, height = int(box["width"]) + 2 * MARGIN, int(box["height"]) + 2 * MARGIN
    page.set_viewport_size({"width": width, "height": height})
    page.evaluate("""(b) => { const c = window.__viewer.get('canvas'); c.resized();
                              c.viewbox({ x: b.x - %d, y: b.y - %d, width: b.width + %d, height: b.height + %d }); }"""
                  % (MARGIN, MARGIN, 2 * MARGIN, 2 * MARGIN), box)
    page.screenshot(path=str(out), full_page=False)
    print(f"{out.relative_to(ROOT)}  {width}x{height}")


def main(names: list[str]) -> None:
    from playwright.sync_api import sync_playwright
    files = [ROOT / "processes" / f"{n}.bpmn" for n in names] if names else sorted((ROOT / "processes").glob("*.bpmn"))
    css = "\n".join((DIST / "assets" / f).read_text(encoding="utf-8")
                    for f in ("diagram-js.css", "bpmn-js.css", "bpmn-font/css/bpmn.css"))
    js = (DIST / "bpmn-viewer.production.min.js").read_text(encoding="utf-8")
    html = PAGE.format(css=css, js=js)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            for bpmn in files:
                page = browser.new_page(viewport={"width": 1200, "height": 800}, device_scale_factor=1)
                page.set_content(html)
                render(page, bpmn, ROOT / "docs" / "processes" / f"{bpmn.stem}.png")
                page.close()
        finally:
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1:])

/* The case page's BPMN diagram (set-up: diagram-viewer.js): the case's process XML and
 * what to highlight from /cases/<key>/diagram.json. Completed nodes, taken sequence
 * flows and the active nodes get canvas markers styled in app.css; the container
 * carries data-warnings="<n>" (bpmn-js import warnings, checked by the browser test).
 *
 * The view opens on what matters in a large process: the current tasks of an open case,
 * the path taken of a closed one (data-focus="active" | "path"), not the whole diagram
 * shrunk to fit, where a long chain's boxes are too small to read. The buttons
 * [data-diagram-zoom=focus|all] switch between that and the whole (data-focus="all");
 * the mouse wheel zooms and dragging pans, as in any bpmn-js viewer. */
(function () {
  "use strict";

  var PADDING = 80;      // diagram units around the focused elements
  var MAX_SCALE = 1.0;   // never larger than the modeler drew it

  function mark(canvas, registry, ids, marker, skip) {
    (ids || []).forEach(function (id) {
      if (registry.get(id) && !(skip && skip.indexOf(id) >= 0)) {
        canvas.addMarker(id, marker);
      }
    });
  }

  // The box around the drawn elements of `ids` (shapes by their bounds, flows by their waypoints).
  function bounds(registry, ids) {
    var box = null;
    function add(x, y, width, height) {
      if (box === null) {
        box = { left: x, top: y, right: x + width, bottom: y + height };
      } else {
        box.left = Math.min(box.left, x);
        box.top = Math.min(box.top, y);
        box.right = Math.max(box.right, x + width);
        box.bottom = Math.max(box.bottom, y + height);
      }
    }
    (ids || []).forEach(function (id) {
      var element = registry.get(id);
      if (!element) {
        return;
      }
      if (element.waypoints) {
        element.waypoints.forEach(function (point) { add(point.x, point.y, 0, 0); });
      } else if (typeof element.width === "number") {
        add(element.x, element.y, element.width, element.height);
      }
    });
    return box;
  }

  // Show `box` centred, as large as the container allows up to MAX_SCALE; false when that
  // would show no more detail than the whole diagram fitted (then the whole is better).
  function zoomTo(canvas, box) {
    canvas.zoom("fit-viewport", "auto");
    var fitted = canvas.viewbox().scale;
    var outer = canvas.viewbox().outer;
    var width = box.right - box.left + 2 * PADDING;
    var height = box.bottom - box.top + 2 * PADDING;
    var scale = Math.min(outer.width / width, outer.height / height, MAX_SCALE);
    if (!(scale > fitted * 1.05)) {
      return false;
    }
    var shownWidth = outer.width / scale;
    var shownHeight = outer.height / scale;
    canvas.viewbox({
      x: (box.left + box.right) / 2 - shownWidth / 2,
      y: (box.top + box.bottom) / 2 - shownHeight / 2,
      width: shownWidth,
      height: shownHeight
    });
    return true;
  }

  window.gridflowDiagram({
    name: "case diagram",
    json: true,
    imported: function (viewer, result, payload) {
      var container = document.getElementById("diagram");
      var canvas = viewer.get("canvas");
      var registry = viewer.get("elementRegistry");
      var highlights = payload.highlights || {};
      var active = highlights.active || [];
      mark(canvas, registry, highlights.completed, "highlight-done", active);
      mark(canvas, registry, highlights.flows, "highlight-flow");
      mark(canvas, registry, active, "highlight-active");
      var warnings = (result && result.warnings) || [];
      container.setAttribute("data-warnings", String(warnings.length));

      var focusKind = active.length ? "active" : "path";
      var focusBox = active.length ? bounds(registry, active)
        : bounds(registry, (highlights.completed || []).concat(highlights.flows || []));
      var mode = "focus";

      function show() {
        canvas.resized();
        var focused = mode === "focus" && focusBox !== null && zoomTo(canvas, focusBox);
        if (!focused) {
          canvas.zoom("fit-viewport", "auto");
        }
        container.setAttribute("data-focus", focused ? focusKind : "all");
      }

      var tools = document.querySelector(".diagram-tools");
      if (tools && focusBox !== null) {
        tools.hidden = false;
      }
      var buttons = document.querySelectorAll("[data-diagram-zoom]");
      Array.prototype.forEach.call(buttons, function (button) {
        button.addEventListener("click", function () {
          mode = button.getAttribute("data-diagram-zoom");
          show();
        });
      });
      show();
      window.addEventListener("resize", show);
    }
  });
})();

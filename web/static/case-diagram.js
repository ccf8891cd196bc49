/* The case page's BPMN diagram (set-up: diagram-viewer.js): the case's process XML and
 * what to highlight from /cases/<key>/diagram.json. Completed nodes, taken sequence
 * flows and the active nodes get canvas markers styled in app.css; the container
 * carries data-warnings="<n>" (bpmn-js import warnings, checked by the browser test). */
(function () {
  "use strict";

  function mark(canvas, registry, ids, marker, skip) {
    (ids || []).forEach(function (id) {
      if (registry.get(id) && !(skip && skip.indexOf(id) >= 0)) {
        canvas.addMarker(id, marker);
      }
    });
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
      window.addEventListener("resize", function () {
        canvas.resized();
        canvas.zoom("fit-viewport", "auto");
      });
    }
  });
})();

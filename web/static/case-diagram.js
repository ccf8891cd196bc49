/* The case page's BPMN diagram: bpmn-js NavigatedViewer (served from node_modules by
 * /vendor/bpmn-js/), the case's process XML and what to highlight from
 * /cases/<key>/diagram.json. Completed nodes, taken sequence flows and the active
 * nodes get canvas markers styled in app.css. When done, the container carries
 * data-imported="true" and data-warnings="<n>" (checked by the browser test). */
(function () {
  "use strict";

  var container = document.getElementById("diagram");
  if (!container) {
    return;
  }
  var status = document.getElementById("diagram-status");

  function fail(error) {
    container.setAttribute("data-imported", "false");
    container.setAttribute("data-error", String((error && error.message) || error));
    if (status) {
      status.textContent = container.getAttribute("data-msg-error") || "Diagram failed to load.";
    }
    if (window.console) {
      console.error("case diagram:", error);
    }
  }

  function mark(canvas, registry, ids, marker, skip) {
    (ids || []).forEach(function (id) {
      if (registry.get(id) && !(skip && skip.indexOf(id) >= 0)) {
        canvas.addMarker(id, marker);
      }
    });
  }

  if (typeof window.BpmnJS !== "function") {
    fail(new Error("bpmn-js did not load"));
    return;
  }

  fetch(container.getAttribute("data-src"), {
    credentials: "same-origin",
    headers: { "Accept": "application/json" }
  })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.json();
    })
    .then(function (payload) {
      var viewer = new window.BpmnJS({ container: container });
      return viewer.importXML(payload.xml).then(function (result) {
        var canvas = viewer.get("canvas");
        var registry = viewer.get("elementRegistry");
        var highlights = payload.highlights || {};
        var active = highlights.active || [];
        canvas.zoom("fit-viewport", "auto");
        mark(canvas, registry, highlights.completed, "highlight-done", active);
        mark(canvas, registry, highlights.flows, "highlight-flow");
        mark(canvas, registry, active, "highlight-active");
        var warnings = (result && result.warnings) || [];
        container.setAttribute("data-warnings", String(warnings.length));
        container.setAttribute("data-imported", "true");
        window.addEventListener("resize", function () {
          canvas.resized();
          canvas.zoom("fit-viewport", "auto");
        });
      });
    })
    .catch(fail);
})();

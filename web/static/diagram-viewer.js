/* The read-only BPMN diagrams' shared set-up (case page, audit trace, process library):
 * bpmn-js NavigatedViewer (served from node_modules by /vendor/bpmn-js/) in #diagram, the
 * source fetched from its data-src, fitted to the viewport. When done the container
 * carries data-imported="true"; on failure data-imported="false", data-error and the
 * container's data-msg-error in #diagram-status (checked by the browser tests).
 *
 * gridflowDiagram({ name, json, imported }):
 *   name      what the console calls it on failure;
 *   json      true: data-src answers {xml: ...} (JSON); false: the XML itself;
 *   imported  optional, function (viewer, result, source) run after the import, before
 *             data-imported is set (result: bpmn-js importXML's, source: the fetched answer). */
(function () {
  "use strict";

  window.gridflowDiagram = function (options) {
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
        console.error(options.name + ":", error);
      }
    }

    if (typeof window.BpmnJS !== "function") {
      fail(new Error("bpmn-js did not load"));
      return;
    }

    fetch(container.getAttribute("data-src"), {
      credentials: "same-origin",
      headers: options.json ? { "Accept": "application/json" } : {}
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return options.json ? response.json() : response.text();
      })
      .then(function (source) {
        var viewer = new window.BpmnJS({ container: container });
        return viewer.importXML(options.json ? source.xml : source).then(function (result) {
          viewer.get("canvas").zoom("fit-viewport", "auto");
          if (options.imported) {
            options.imported(viewer, result, source);
          }
          container.setAttribute("data-imported", "true");
        });
      })
      .catch(fail);
  };
})();

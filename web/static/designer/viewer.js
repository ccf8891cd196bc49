/* The process library's diagram: bpmn-js NavigatedViewer on one version's XML. */
(function () {
  "use strict";
  var container = document.getElementById("diagram");
  if (!container) {
    return;
  }
  var status = document.getElementById("diagram-status");
  function fail(error) {
    container.setAttribute("data-imported", "false");
    if (status) {
      status.textContent = container.getAttribute("data-msg-error") || "Diagram failed to load.";
    }
    if (window.console) {
      console.error("diagram:", error);
    }
  }
  if (typeof window.BpmnJS !== "function") {
    fail(new Error("bpmn-js did not load"));
    return;
  }
  fetch(container.getAttribute("data-src"), { credentials: "same-origin" })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    })
    .then(function (xml) {
      var viewer = new window.BpmnJS({ container: container });
      return viewer.importXML(xml).then(function () {
        viewer.get("canvas").zoom("fit-viewport", "auto");
        container.setAttribute("data-imported", "true");
      });
    })
    .catch(fail);
})();

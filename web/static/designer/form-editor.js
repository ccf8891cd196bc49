/* The form editor's live preview: after each pause in typing, the definition is sent
 * to the server, which validates it (errors name the field and line) and renders it
 * with the same templates as the task page. */
(function () {
  "use strict";
  var area = document.getElementById("definition");
  var preview = document.getElementById("form-preview");
  var list = document.getElementById("definition-errors");
  if (!area || !preview) {
    return;
  }
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // the preview's form is for looking at: pressing Enter in it submits nothing
  preview.addEventListener("submit", function (event) { event.preventDefault(); });
  var timer = null;
  var sent = 0;

  function lineOffset(n) {
    var lines = area.value.split("\n");
    var offset = 0;
    for (var i = 0; i < n - 1 && i < lines.length; i++) {
      offset += lines[i].length + 1;
    }
    return [offset, offset + (lines[n - 1] || "").length];
  }

  function showErrors(errors) {
    list.innerHTML = "";
    errors.forEach(function (e) {
      var li = document.createElement("li");
      li.className = "error";
      li.setAttribute("data-field", e.field || "");
      li.setAttribute("data-line", e.line || "");
      var text = (e.line ? preview.getAttribute("data-msg-line").replace("{n}", e.line) + " " : "") +
        (e.field ? e.field + ": " : "") + e.message;
      if (e.line) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "problem";
        button.textContent = text;
        button.addEventListener("click", function () {
          var range = lineOffset(e.line);
          area.focus();
          area.setSelectionRange(range[0], range[1]);
        });
        li.appendChild(button);
      } else {
        li.textContent = text;
      }
      list.appendChild(li);
    });
  }

  function refresh() {
    var mine = ++sent;
    fetch(area.getAttribute("data-preview-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ definition: area.value })
    }).then(function (r) { return r.json(); }).then(function (body) {
      if (mine !== sent) {
        return;  // a newer request is on its way
      }
      showErrors(body.errors || []);
      if (body.html) {
        preview.innerHTML = body.html;
      }
      preview.setAttribute("data-state", body.ok ? "ok" : "errors");
    });
  }

  area.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  });
})();

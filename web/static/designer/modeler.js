/* The designer's modeler: bpmn-js Modeler (BPMN) or dmn-js Modeler (DMN), both served
 * from node_modules. "Save" keeps a draft in this browser (localStorage) and runs the
 * server's check (the same as `gridflow validate`); each problem is listed, badged
 * next to its element on the diagram (in a decision table: its cell), and clicking it
 * selects the element (opens the decision and points at the cell). "Deploy"
 * sends the XML to be checked and stored as a new version (nothing if any problem).
 * The draft is kept per version content (the page's content hash, data-base): it is restored
 * only onto the version it was made from, with a button to discard it; a draft made from
 * another version is never applied, the page says it exists and links to that version.
 * Warnings bpmn-js gives on import (an element it cannot read, say an id that is not an XML
 * name, is left out of the diagram, and saving would lose it) are shown, not swallowed.
 * State for tests: #modeler[data-imported], [data-checked], [data-problems],
 * [data-draft] (none, restored, saved, discarded), [data-import-warnings]. */
(function () {
  "use strict";

  var container = document.getElementById("modeler");
  if (!container) {
    return;
  }
  var kind = container.getAttribute("data-kind");
  var filename = container.getAttribute("data-filename");
  var base = container.getAttribute("data-base") || "";
  var version = container.getAttribute("data-version") || "";
  // one draft per file and version content: "gridflow-draft:<process>:<file>@<content hash>"
  // holding { base, version, xml }. (A draft under the bare prefix is from before drafts knew
  // their version: its base is unknown, so it is never applied and is dropped.)
  var draftPrefix = "gridflow-draft:" + container.getAttribute("data-process") + ":" + filename;
  var draftKey = draftPrefix + "@" + base;
  var discardButton = document.getElementById("btn-discard-draft");
  var otherDraftsEl = document.getElementById("other-drafts");
  var warningsEl = document.getElementById("import-warnings");
  var statusEl = document.getElementById("editor-status");
  var list = document.getElementById("problems");
  var deployResult = document.getElementById("deploy-result");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var overlayIds = [];
  var marked = [];
  var original = null;

  function msg(name) {
    return container.getAttribute("data-msg-" + name) || name;
  }

  function status(text) {
    statusEl.textContent = text;
  }

  // -------------------------------------------------------------- the draft in this browser

  function readDraft(key) {
    try {
      var draft = JSON.parse(window.localStorage.getItem(key) || "null");
      return draft && typeof draft.xml === "string" ? draft : null;
    } catch (e) {
      return null;   // no storage, or not a draft of ours
    }
  }

  function storeDraft(xml) {
    try {
      window.localStorage.setItem(draftKey, JSON.stringify({
        base: base, version: Number(version) || version, xml: xml, saved: new Date().toISOString()
      }));
    } catch (e) {
      return false;  // private mode: the draft simply is not kept
    }
    discardButton.hidden = false;
    return true;
  }

  function removeDraft() {
    try {
      window.localStorage.removeItem(draftKey);
    } catch (e) { /* nothing kept */ }
    discardButton.hidden = true;
  }

  /* Drafts of this file made from other versions: never applied here; the page says they
   * exist and links to the version each was made from. */
  function showOtherDrafts() {
    var versions = [];
    try {
      window.localStorage.removeItem(draftPrefix);   // from before drafts knew their version
      for (var i = 0; i < window.localStorage.length; i++) {
        var key = window.localStorage.key(i);
        if (key && key !== draftKey && key.indexOf(draftPrefix + "@") === 0) {
          var draft = readDraft(key);
          if (draft && draft.version && versions.indexOf(String(draft.version)) < 0) {
            versions.push(String(draft.version));
          }
        }
      }
    } catch (e) { /* no storage */ }
    otherDraftsEl.innerHTML = "";
    versions.sort(function (a, b) { return Number(a) - Number(b); });
    versions.forEach(function (v) {
      var link = document.createElement("a");
      var url = new URL(window.location.href);
      url.searchParams.set("v", v);
      url.searchParams.set("file", filename);
      link.href = url.pathname + url.search;
      link.setAttribute("data-version", v);
      link.textContent = msg("other-draft").replace("{n}", v);
      otherDraftsEl.appendChild(link);
      otherDraftsEl.appendChild(document.createTextNode(" "));
    });
    otherDraftsEl.hidden = !versions.length;
  }

  // -------------------------------------------------------------- import warnings

  var MAX_WARNINGS = 5;

  /* What bpmn-js could not read: the count, and the first few of its messages (English, as
   * bpmn-js gives them), under the page's own explanation. */
  function showImportWarnings(warnings) {
    container.setAttribute("data-import-warnings", String(warnings.length));
    var items = warningsEl.querySelector("ul");
    items.innerHTML = "";
    warnings.slice(0, MAX_WARNINGS).forEach(function (w) {
      var li = document.createElement("li");
      li.className = "import-warning";
      li.textContent = String((w && w.message) || w).replace(/\s+/g, " ").trim();
      items.appendChild(li);
    });
    if (warnings.length > MAX_WARNINGS) {
      var more = document.createElement("li");
      more.className = "fix";
      more.textContent = msg("more-warnings").replace("{n}", String(warnings.length - MAX_WARNINGS));
      items.appendChild(more);
    }
    warningsEl.querySelector(".import-warnings-count").textContent =
      msg("import-warnings").replace("{n}", String(warnings.length));
    warningsEl.hidden = !warnings.length;
  }

  function importedStatus(restored, warnings) {
    var parts = [];
    if (restored) {
      parts.push(msg("draft"));
    }
    if (warnings.length) {
      parts.push(msg("import-warnings").replace("{n}", String(warnings.length)));
    }
    return parts.join(" ");
  }

  var Modeler = kind === "dmn" ? window.DmnJS : window.BpmnJS;
  if (typeof Modeler !== "function") {
    container.setAttribute("data-imported", "false");
    status(msg("error"));
    return;
  }
  // bpmn-js 18 (diagram-js 15) and dmn-js 17 bind the keyboard to the canvas implicitly (when
  // it has the focus: a click on the diagram); keyboard.bindTo is no longer supported
  var modeler = new Modeler(kind === "dmn" ? { container: container } : { container: container, keyboard: { bind: true } });
  window.gridflowModeler = modeler;  // for people debugging in the console

  function activeViewer() {
    return kind === "dmn" ? modeler.getActiveViewer() : modeler;
  }

  function service(name) {
    var viewer = activeViewer();
    try {
      return viewer ? viewer.get(name) : null;
    } catch (e) {
      return null;
    }
  }

  function clearMarks() {
    var overlays = service("overlays");
    var canvas = service("canvas");
    if (overlays) {
      overlayIds.forEach(function (id) { overlays.remove(id); });
    }
    if (canvas) {
      marked.forEach(function (id) { canvas.removeMarker(id, "has-problem"); });
    }
    overlayIds = [];
    marked = [];
  }

  function selectElement(id) {
    var registry = service("canvas") && service("elementRegistry");  // a diagram, not a table
    var element = registry && registry.get(id);
    if (!element) {
      return kind === "dmn" ? showInDecision(id) : false;
    }
    service("selection").select(element);
    var canvas = service("canvas");
    if (canvas.scrollToElement) {
      canvas.scrollToElement(element);
    }
    return true;
  }

  /* DMN: a problem names a decision table's cell (a rule's input or output entry) or an
   * input's expression. Those live in a decision's table view, not on the requirements
   * diagram: find the decision that holds the id, open its table, and point at the cell
   * (or, for an input expression, at its column's head). */
  function pathTo(node, id, depth) {
    if (!node || typeof node !== "object" || depth > 8) {
      return null;
    }
    if (node.id === id) {
      return [node];
    }
    var keys = Object.keys(node);
    for (var i = 0; i < keys.length; i++) {
      if (keys[i].charAt(0) === "$") {
        continue;  // $parent, $attrs …: back references and raw attributes
      }
      var value = node[keys[i]];
      var children = Array.isArray(value) ? value : (value && value.$type ? [value] : []);
      for (var j = 0; j < children.length; j++) {
        var found = pathTo(children[j], id, depth + 1);
        if (found) {
          return [node].concat(found);
        }
      }
    }
    return null;
  }

  /* The cell the table shows for an id: the element's own, else its nearest holder's
   * (an input expression is shown as its column's head). */
  function cellFor(ids) {
    for (var i = 0; i < ids.length; i++) {
      var escaped = window.CSS && CSS.escape ? CSS.escape(ids[i]) : ids[i];
      var cell = container.querySelector('[data-element-id="' + escaped + '"]') ||
        container.querySelector('th[data-col-id="' + escaped + '"]');
      if (cell) {
        return cell;
      }
    }
    return null;
  }

  function holdersOf(view, id) {
    var path = view ? pathTo(view.element, id, 0) : null;
    return path ? path.map(function (node) { return node.id; }).filter(Boolean).reverse() : [id];
  }

  function showInDecision(id) {
    var views = modeler.getViews ? modeler.getViews() : [];
    for (var i = 0; i < views.length; i++) {
      var path = pathTo(views[i].element, id, 0);
      if (!path || views[i].type !== "decisionTable") {
        continue;
      }
      var ids = holdersOf(views[i], id);
      var opened = modeler.getActiveView() === views[i] ? Promise.resolve() : Promise.resolve(modeler.open(views[i]));
      opened.then(function () {
        markProblemCells();
        var cell = cellFor(ids);
        if (cell) {
          container.querySelectorAll(".problem-focus").forEach(function (c) { c.classList.remove("problem-focus"); });
          cell.classList.add("problem-focus");
          cell.scrollIntoView({ block: "center", inline: "center" });
        }
      });
      return true;
    }
    return false;
  }

  var problemIds = [];

  function markProblemCells() {
    if (kind !== "dmn") {
      return;
    }
    container.querySelectorAll(".has-problem-cell").forEach(function (c) { c.classList.remove("has-problem-cell"); });
    var view = modeler.getActiveView();
    problemIds.forEach(function (id) {
      var cell = cellFor(holdersOf(view, id));
      if (cell) {
        cell.classList.add("has-problem-cell");
      }
    });
  }

  // one entry of the panel: the finding (a button that selects its element), how to fix it,
  // and its file when it is not the one open
  function listFinding(p, className, prefix) {
    var li = document.createElement("li");
    var button = document.createElement("button");
    button.type = "button";
    button.className = className;
    button.setAttribute("data-element", p.element || "");
    button.textContent = prefix + (p.element ? p.element + ": " : "") + p.message;
    button.addEventListener("click", function () { selectElement(p.element); });
    li.appendChild(button);
    [p.fix, p.file && p.file !== filename ? p.file : ""].forEach(function (text) {
      if (text) {
        var line = document.createElement("div");
        line.className = "fix";
        line.textContent = text;
        li.appendChild(line);
      }
    });
    list.appendChild(li);
  }

  function showProblems(problems) {
    clearMarks();
    list.innerHTML = "";
    var registry = service("elementRegistry");
    var overlays = service("overlays");
    var canvas = service("canvas");
    problems.forEach(function (p) {
      listFinding(p, "problem", "");
      if (canvas && overlays && registry && p.element && registry.get(p.element)) {
        if (marked.indexOf(p.element) < 0) {
          canvas.addMarker(p.element, "has-problem");
          marked.push(p.element);
        }
        var badge = document.createElement("div");
        badge.className = "problem-badge";
        badge.title = p.message + (p.fix ? " — " + p.fix : "");
        badge.textContent = "⚠ " + p.message;
        overlayIds.push(overlays.add(p.element, "problem", { position: { bottom: -4, left: 0 }, html: badge }));
      }
    });
    problemIds = problems.map(function (p) { return p.element; }).filter(Boolean);
    markProblemCells();
    container.setAttribute("data-problems", String(problems.length));
  }

  // notes refuse nothing (an element the dashboard reads is gone): listed after the problems
  function showNotes(notes) {
    notes.forEach(function (n) { listFinding(n, "problem note", "ℹ "); });
    container.setAttribute("data-notes", String(notes.length));
  }

  function post(url, xml) {
    var files = {};
    files[filename] = xml;
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ files: files })
    }).then(function (response) {
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    });
  }

  function currentXml() {
    return modeler.saveXML({ format: true }).then(function (result) { return result.xml; });
  }

  function save() {
    status(msg("checking"));
    deployResult.innerHTML = "";
    return currentXml().then(function (xml) {
      if (storeDraft(xml)) {
        container.setAttribute("data-draft", "saved");
      }
      return post(container.getAttribute("data-check-url"), xml);
    }).then(function (res) {
      if (res.body.error) {
        status(res.body.error);
        return;
      }
      showProblems(res.body.problems || []);
      showNotes(res.body.notes || []);
      container.setAttribute("data-checked", res.body.ok ? "ok" : "problems");
      status(res.body.ok ? msg("ok") : msg("problems"));
    }).catch(function (error) {
      status(String(error));
    });
  }

  function deploy() {
    status(msg("deploying"));
    deployResult.innerHTML = "";
    return currentXml().then(function (xml) {
      return post(container.getAttribute("data-deploy-url"), xml);
    }).then(function (res) {
      if (res.body.error) {
        status(res.body.error);
        return;
      }
      showProblems(res.body.problems || []);
      showNotes(res.body.notes || []);
      if (!res.body.ok) {
        status(msg("refused"));
        container.setAttribute("data-deployed", "refused");
        return;
      }
      removeDraft();
      var created = res.body.created || [];
      if (!created.length) {
        status(msg("unchanged"));
        container.setAttribute("data-deployed", "unchanged");
        return;
      }
      status(msg("deployed"));
      var ul = document.createElement("ul");
      ul.id = "deployed";
      created.forEach(function (v) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = v.url;
        a.textContent = v.process + " v" + v.version + " (" + v.hash + ")";
        li.appendChild(a);
        ul.appendChild(li);
      });
      deployResult.appendChild(ul);
      container.setAttribute("data-deployed", "created");
    }).catch(function (error) {
      status(String(error));
    });
  }

  /* Import `xml` and show it: the whole diagram, or a DMN file's one decision table. Resolves
   * with bpmn-js's (dmn-js's) import warnings. */
  function load(xml) {
    var warnings = [];
    return modeler.importXML(xml).then(function (result) {
      warnings = (result && result.warnings) || [];
      if (kind !== "dmn") {
        modeler.get("canvas").zoom("fit-viewport", "auto");
      } else {
        // one decision table (the usual case): open the table itself, not the requirements diagram
        var tables = modeler.getViews().filter(function (v) { return v.type === "decisionTable"; });
        if (tables.length === 1) {
          return modeler.open(tables[0]);
        }
      }
    }).then(function () {
      showImportWarnings(warnings);
      return warnings;
    }, function (error) {
      showImportWarnings((error && error.warnings) || []);
      throw error;
    });
  }

  function discardDraft() {
    if (original === null) {
      return;
    }
    removeDraft();
    clearMarks();
    list.innerHTML = "";
    deployResult.innerHTML = "";
    ["data-checked", "data-problems", "data-notes", "data-deployed"].forEach(function (name) {
      container.removeAttribute(name);
    });
    status(msg("loading"));
    load(original).then(function (warnings) {
      container.setAttribute("data-draft", "discarded");
      status(msg("discarded") + (warnings.length ? " " + importedStatus(false, warnings) : ""));
    }).catch(function (error) {
      container.setAttribute("data-imported", "false");
      status(msg("error") + " " + String((error && error.message) || error));
    });
  }

  if (kind === "dmn") {
    // a table re-renders when edited or reopened: mark its problem cells again
    modeler.on("views.changed", function () { window.setTimeout(markProblemCells, 0); });
  }

  status(msg("loading"));
  showOtherDrafts();
  fetch(container.getAttribute("data-src"), { credentials: "same-origin" })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    })
    .then(function (xml) {
      original = xml;
      var draft = readDraft(draftKey);
      // only a draft made from this very content (its base), and one that changes something
      var restored = !!draft && draft.base === base && draft.xml !== original;
      discardButton.hidden = !draft;
      return load(restored ? draft.xml : xml).then(function (warnings) {
        container.setAttribute("data-imported", "true");
        container.setAttribute("data-draft", restored ? "restored" : "none");
        status(importedStatus(restored, warnings));
      });
    })
    .catch(function (error) {
      container.setAttribute("data-imported", "false");
      status(msg("error") + " " + String((error && error.message) || error));
    });

  document.getElementById("btn-save").addEventListener("click", save);
  document.getElementById("btn-deploy").addEventListener("click", deploy);
  discardButton.addEventListener("click", discardDraft);
})();

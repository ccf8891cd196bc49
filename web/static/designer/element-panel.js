/* The modeler's element panel: what the engine reads of the selected BPMN element, editable
 * in the browser (bpmn-js's Modeler draws; it has no panel for these): its name and English
 * name (nameEn), a user task's form, time limit and assignee (spiffworkflow:properties), a
 * flow's condition, a script task's script, a timer, a business rule task's decision
 * (spiffworkflow:calledDecisionId), a call activity's called process, and the process's own
 * properties (startForm, startRoles, businessKeyPrefix) on its pool or, without a pool, with
 * nothing selected. Every change is one of bpmn-js's commands: undo and redo take it back,
 * "Save and check" checks it. Extension elements the panel does not know are kept as they are.
 * State for tests: #element-panel[data-element] (the element shown). */
(function () {
  "use strict";

  var SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core";
  var panel = document.getElementById("element-panel");
  var modeler = window.gridflowModeler;
  if (!panel || !modeler || !modeler.get) {
    return;
  }
  var modeling = modeler.get("modeling");
  var moddle = modeler.get("moddle");
  var current = null;  // the diagram element shown ({ element, bo, process })

  function is(bo, type) {
    return bo && bo.$instanceOf && bo.$instanceOf(type);
  }

  function field(id) {
    return document.getElementById(id);
  }

  // -------------------------------------------------------------- spiffworkflow extensions

  function isSpiff(node, localName) {
    var ns = node && node.$descriptor && node.$descriptor.ns;
    return !!ns && ns.uri === SPIFF && ns.localName === localName;
  }

  function extensionValues(bo) {
    return bo.extensionElements && bo.extensionElements.values ? bo.extensionElements.values : [];
  }

  function spiffProperty(bo, name) {
    var holder = extensionValues(bo).filter(function (v) { return isSpiff(v, "properties"); })[0];
    var found = holder ? (holder.$children || []).filter(function (p) {
      return isSpiff(p, "property") && p.name === name;
    })[0] : null;
    return found ? found.value || "" : "";
  }

  /* What the engine reads for a user task's property: the Spiff property, else the Camunda
   * Modeler attribute (camunda:formKey …, engine/bpmn.py honours both, the Spiff one first). */
  function taskProperty(bo, name) {
    var value = spiffProperty(bo, name);
    if (!value && camundaAttribute(bo, name)) {
      value = bo.$attrs[camundaAttribute(bo, name)] || "";
      if (name === "formKey") {   // embedded:app:forms/verify_on_site.html -> verify_on_site (form_key_of)
        var last = value.trim().split(":").pop().split("/").pop();
        value = last.indexOf(".") >= 0 ? last.slice(0, last.lastIndexOf(".")) : last;
      }
    }
    return value;
  }

  /* The attribute a Camunda Modeler file holds a task's property in (camunda:formKey,
   * camunda:dueDate, camunda:assignee), when it has one: the one taskProperty falls back to. */
  function camundaAttribute(bo, name) {
    var attrs = bo.$attrs || {};
    return attrs["camunda:" + name] !== undefined ? "camunda:" + name : null;
  }

  function spiffBody(bo, localName) {
    var found = extensionValues(bo).filter(function (v) { return isSpiff(v, localName); })[0];
    return found ? (found.$body || "").trim() : "";
  }

  function any(localName, attrs) {
    return moddle.createAny("spiffworkflow:" + localName, SPIFF, attrs || {});
  }

  /* A new extensionElements for `bo` with `replace(values)` applied to a copy of its values:
   * the old object stays untouched for undo. None at all when nothing is left. */
  function extensionsWith(bo, replace) {
    var values = replace(extensionValues(bo).slice());
    if (!values.length) {
      return undefined;
    }
    var extensions = moddle.create("bpmn:ExtensionElements", { values: values });
    values.forEach(function (v) { v.$parent = extensions; });
    return extensions;
  }

  function withProperty(bo, name, value) {
    return extensionsWith(bo, function (values) {
      var at = values.findIndex(function (v) { return isSpiff(v, "properties"); });
      var old = at >= 0 ? values[at].$children || [] : [];
      var children = [], placed = false;
      old.forEach(function (p) {
        if (isSpiff(p, "property") && p.name === name) {
          if (value && !placed) {
            children.push(any("property", { name: name, value: value }));
            placed = true;
          }
        } else {
          children.push(p);
        }
      });
      if (value && !placed) {
        children.unshift(any("property", { name: name, value: value }));
      }
      var holder = null;
      if (children.length) {
        holder = any("properties");
        holder.$children = children;
        children.forEach(function (c) { c.$parent = holder; });
      }
      if (at >= 0) {
        values.splice(at, 1);
      }
      if (holder) {
        values.splice(at >= 0 ? at : 0, 0, holder);
      }
      return values;
    });
  }

  function withBody(bo, localName, value) {
    return extensionsWith(bo, function (values) {
      var at = values.findIndex(function (v) { return isSpiff(v, localName); });
      if (at >= 0) {
        values.splice(at, 1);
      }
      if (value) {
        var node = any(localName);
        node.$body = value;
        values.splice(at >= 0 ? at : values.length, 0, node);
      }
      return values;
    });
  }

  // -------------------------------------------------------------- what is shown

  function timerOf(bo) {
    return (bo.eventDefinitions || []).filter(function (d) { return is(d, "bpmn:TimerEventDefinition"); })[0] || null;
  }

  function timerType(timer) {
    return ["timeDuration", "timeDate", "timeCycle"].filter(function (t) { return timer.get(t); })[0] || "timeDuration";
  }

  function kindsOf(bo, process) {
    var kinds = ["named"];
    kinds.push(is(bo, "bpmn:Lane") ? "lane" : "nameEn");   // a lane's name is its role code
    if (is(bo, "bpmn:UserTask")) { kinds.push("userTask"); }
    if (is(bo, "bpmn:ScriptTask")) { kinds.push("scriptTask"); }
    if (is(bo, "bpmn:BusinessRuleTask")) { kinds.push("businessRuleTask"); }
    if (is(bo, "bpmn:CallActivity")) { kinds.push("callActivity"); }
    if (is(bo, "bpmn:SequenceFlow")) { kinds.push("sequenceFlow"); }
    if (is(bo, "bpmn:Event") && timerOf(bo)) { kinds.push("timer"); }
    if (process) { kinds.push("process"); }
    return kinds;
  }

  function show(element) {
    var bo = element && element.businessObject;
    if (!bo || is(bo, "bpmn:Collaboration")) {   // nothing selected in a diagram with pools
      current = null;
      panel.querySelectorAll("[data-show]").forEach(function (node) {
        node.hidden = node.getAttribute("data-show") !== "nothing";
      });
      field("element-kind").textContent = "";
      panel.setAttribute("data-element", "");
      return;
    }
    var process = is(bo, "bpmn:Participant") ? bo.processRef : (is(bo, "bpmn:Process") ? bo : null);
    current = { element: element, bo: bo, process: process };
    var kinds = kindsOf(bo, process);
    panel.querySelectorAll("[data-show]").forEach(function (node) {
      node.hidden = kinds.indexOf(node.getAttribute("data-show")) < 0;
      // a field answers for the element it was filled for: a hidden field that still had
      // the focus fires its change when it loses it, and must not reach another element
      node.querySelectorAll("[data-edit]").forEach(function (input) {
        input.setAttribute("data-for", node.hidden ? "" : bo.id || "");
        if (!node.hidden) {   // filled with what the element holds, as a change is compared with
          var value = stored(input.getAttribute("data-edit"));
          if (input.tagName === "SELECT") {
            setSelect(input, value);
          } else {
            input.value = value;
          }
        }
      });
    });
    field("el-id").value = (process || bo).id || bo.id || "";   // a pool's id, name and English name are its process's
    if (is(bo, "bpmn:Lane")) {
      field("el-name").setAttribute("list", "lane-codes");   // the role codes, as suggestions
    } else {
      field("el-name").removeAttribute("list");
    }
    var type = (bo.$type || "").replace(/^bpmn:/, "");
    field("element-kind").textContent = panel.getAttribute("data-kind-" + type.toLowerCase()) || type;
    panel.setAttribute("data-element", bo.id || "");
  }

  // a form key the list does not have (a form not yet made) is kept and shown as it is
  function setSelect(select, value) {
    var known = Array.prototype.some.call(select.options, function (o) { return o.value === value; });
    if (!known) {
      var option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      option.setAttribute("data-unknown", "");
      select.appendChild(option);
    }
    select.value = value;
  }

  function showCurrent() {
    var selected = modeler.get("selection").get();
    show(selected.length === 1 ? selected[0] : modeler.get("canvas").getRootElement());
  }

  // -------------------------------------------------------------- changes

  function apply(what, value) {
    if (!current) {
      return;
    }
    var element = current.element, bo = current.bo, process = current.process;
    value = value.trim();
    if (what === "name") {
      if (is(bo, "bpmn:Participant") || is(bo, "bpmn:Process")) {
        if (is(bo, "bpmn:Participant")) {
          modeling.updateLabel(element, value);
        }
        modeling.updateModdleProperties(element, process, { name: value || undefined });
      } else {
        modeling.updateLabel(element, value || null);
      }
    } else if (what.indexOf("prop:") === 0) {
      var name = what.slice(5), owner = ownerOf(name);
      var change = { extensionElements: withProperty(owner, name, value) };
      if (!value && owner === bo && camundaAttribute(bo, name)) {
        // a cleared field clears what the engine reads: the Camunda Modeler attribute as well
        // (else it shows again and still counts), in the same command, so one undo restores both
        change[camundaAttribute(bo, name)] = undefined;
      }
      modeling.updateModdleProperties(element, owner, change);
    } else if (what === "condition") {
      modeling.updateProperties(element, {
        conditionExpression: value ? moddle.create("bpmn:FormalExpression", { body: value }) : undefined
      });
    } else if (what === "script") {
      modeling.updateProperties(element, { script: value || undefined });
    } else if (what === "timer" || what === "timerType") {
      var timer = timerOf(bo);
      var type = field("el-timer-type").value, text = field("el-timer").value.trim();
      var change = { timeDuration: undefined, timeDate: undefined, timeCycle: undefined };
      change[type] = moddle.create("bpmn:FormalExpression", { body: text });
      modeling.updateModdleProperties(element, timer, change);
    } else if (what === "decision") {
      modeling.updateModdleProperties(element, bo, { extensionElements: withBody(bo, "calledDecisionId", value) });
    } else if (what === "calledElement") {
      modeling.updateProperties(element, { calledElement: value || undefined });
    }
  }

  // the process's own properties, which a pool shows for its process; the rest are the element's
  var PROCESS_PROPERTIES = ["nameEn", "startForm", "startRoles", "businessKeyPrefix"];

  function ownerOf(name) {
    return PROCESS_PROPERTIES.indexOf(name) >= 0 ? current.process || current.bo : current.bo;
  }

  // what the element holds for a field: shown in it, and an unchanged field makes no command
  function stored(what) {
    var bo = current.bo;
    if (what === "name") {
      return (is(bo, "bpmn:Participant") ? bo.name : (current.process || bo).name) || "";
    }
    if (what.indexOf("prop:") === 0) {
      var name = what.slice(5);
      return PROCESS_PROPERTIES.indexOf(name) >= 0 ? spiffProperty(ownerOf(name), name) : taskProperty(bo, name);
    }
    if (what === "condition") {
      return bo.conditionExpression ? (bo.conditionExpression.body || "").trim() : "";
    }
    if (what === "script") {
      return (bo.script || "").trim();
    }
    if (what === "timer" || what === "timerType") {
      var timer = timerOf(bo), type = timerType(timer);
      return what === "timerType" ? type : (timer.get(type) ? (timer.get(type).body || "").trim() : "");
    }
    if (what === "decision") {
      return spiffBody(bo, "calledDecisionId");
    }
    return what === "calledElement" ? bo.calledElement || "" : "";
  }

  panel.querySelectorAll("[data-edit]").forEach(function (input) {
    input.addEventListener("change", function () {
      var what = input.getAttribute("data-edit");
      if (current && input.getAttribute("data-for") === (current.bo.id || "") && input.value.trim() !== stored(what)) {
        apply(what, input.value);
      }
    });
  });
  panel.querySelector("form").addEventListener("submit", function (event) { event.preventDefault(); });

  show(null);
  modeler.on("selection.changed", showCurrent);
  modeler.on("import.done", showCurrent);
  modeler.on("commandStack.changed", showCurrent);   // an undo, a redo, a rename on the canvas
})();

/* The process library's diagram: one version's XML, read-only (set-up: diagram-viewer.js). */
window.gridflowDiagram({ name: "diagram", json: false });

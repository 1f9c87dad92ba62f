// xray-seg review pages: upload drop zone, filters, case navigation. No framework, no build step (viewer.js: viewer).
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }

  function formatMB(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

  function setupUpload() {
    var form = document.getElementById("upload-form");
    if (!form) { return; }
    var input = document.getElementById("file-input");
    var zone = document.getElementById("dropzone");
    var nameEl = document.getElementById("file-name");
    var status = document.getElementById("upload-status");
    var button = document.getElementById("submit-button");
    var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10) || 0;

    function check() {
      var file = input.files && input.files[0];
      status.classList.remove("error");
      status.textContent = "";
      nameEl.textContent = file ? file.name + " (" + formatMB(file.size) + ")" : "";
      if (file && maxBytes && file.size > maxBytes) {
        status.classList.add("error");
        status.textContent = "This file is larger than the limit of " + formatMB(maxBytes) + ".";
        return false;
      }
      return Boolean(file);
    }

    input.addEventListener("change", check);
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.add("dragover"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragover"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        if (check()) { form.requestSubmit(); }
      }
    });
    form.addEventListener("submit", function (event) {
      if (!check()) {
        event.preventDefault();
        if (!status.textContent) { status.textContent = "Choose a file first."; }
        return;
      }
      button.disabled = true;
      status.textContent = "Segmenting\u2026";
    });
  }

  function setupFilters() {
    var form = document.getElementById("filters");
    if (!form) { return; }
    Array.prototype.forEach.call(form.querySelectorAll(".autosubmit"), function (el) {
      el.addEventListener("change", function () { form.requestSubmit(); });
    });
  }

  function setupKeys() {
    document.addEventListener("keydown", function (event) {
      var tag = (event.target && event.target.tagName) || "";
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || tag === "BUTTON" || event.altKey || event.ctrlKey || event.metaKey) {
        return;
      }
      var link = null;
      var arrows = !document.getElementById("viewer");  // in the case viewer the arrows pan the film
      if ((arrows && event.key === "ArrowRight") || event.key === "j") { link = document.getElementById("next-case"); }
      if ((arrows && event.key === "ArrowLeft") || event.key === "k") { link = document.getElementById("prev-case"); }
      if (link) { window.location.href = link.href; }
    });
  }

  ready(function () { setupUpload(); setupFilters(); setupKeys(); });
})();

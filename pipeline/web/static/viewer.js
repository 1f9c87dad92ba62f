// xray-seg case viewer: full-bit-depth window/level, zoom/pan, layers, and the mask editor. No framework.
//
// The film arrives as zlib-compressed little-endian uint16 values at its original size (pipeline/web/pixels.py);
// it is windowed here through a 65536-entry lookup table into a canvas of the film's size. Every layer (image,
// mask, outline, probability map) lies in one "stage" of the film's size in CSS pixels that is moved and scaled
// as a whole, so the layers stay aligned at any zoom. The mask is edited at the film's resolution.
(function () {
  "use strict";

  var MASK_RGB = [255, 80, 40];
  var MAX_UNDO = 8;

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }
  function $(id) { return document.getElementById(id); }
  function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }

  function inflate(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error("pixels: HTTP " + r.status); }
      return new Response(r.body.pipeThrough(new DecompressionStream("deflate"))).arrayBuffer();
    });
  }

  function setup() {
    var viewer = $("viewer");
    if (!viewer) { return; }
    var stage = $("stage");
    var meta = {};
    try { meta = JSON.parse(viewer.getAttribute("data-meta") || "{}"); } catch (e) { meta = {}; }
    var rows = meta.rows || parseInt(viewer.getAttribute("data-rows"), 10);
    var cols = meta.cols || parseInt(viewer.getAttribute("data-cols"), 10);
    if (!rows || !cols) { return; }
    var dpr = window.devicePixelRatio || 1;
    var presets = meta.presets || {};
    var offset = meta.offset || 0, unit = meta.scale || 1;
    var view = { scale: 1, tx: 0, ty: 0, fit: true };
    var win = { lo: 0, hi: 255, invert: false };
    var pixels = null, imageData = null;
    var xray = $("xray"), canvas = $("xray-canvas");
    var ctx = canvas ? canvas.getContext("2d") : null;
    var tool = "pan";
    var layer = "overlay";

    stage.style.width = cols + "px";
    stage.style.height = rows + "px";

    // ---- view transform --------------------------------------------------------------------------------------
    function box() { return viewer.getBoundingClientRect(); }
    function fitScale() { var r = box(); return Math.min(r.width / cols, r.height / rows); }
    function applyView() {
      stage.style.transform = "translate(" + view.tx + "px," + view.ty + "px) scale(" + view.scale + ")";
      stage.classList.toggle("pixelated", view.scale * dpr >= 1.5);
      var z = $("zoom-value");
      if (z) { z.textContent = view.fit ? "fit" : Math.round(view.scale * dpr * 100) + "%"; }
      viewer.setAttribute("data-scale", String(view.scale));
      updateRing();
    }
    function fit() {
      var r = box(), s = fitScale();
      view.scale = s; view.tx = (r.width - cols * s) / 2; view.ty = (r.height - rows * s) / 2; view.fit = true;
      applyView();
    }
    function zoomTo(scale, px, py) {
      var r = box();
      if (px === undefined) { px = r.width / 2; py = r.height / 2; }
      var s = clamp(scale, Math.min(fitScale(), 1 / dpr) / 4, 16 / dpr);
      view.tx = px - (px - view.tx) * s / view.scale;
      view.ty = py - (py - view.ty) * s / view.scale;
      view.scale = s; view.fit = false;
      applyView();
    }
    function zoomBy(factor, px, py) { zoomTo(view.scale * factor, px, py); }
    function native() { zoomTo(1 / dpr); }
    function panBy(dx, dy) { view.tx += dx; view.ty += dy; view.fit = false; applyView(); }
    function toImage(clientX, clientY) {
      var r = box();
      return { x: (clientX - r.left - view.tx) / view.scale, y: (clientY - r.top - view.ty) / view.scale };
    }

    // ---- window / level --------------------------------------------------------------------------------------
    var renderQueued = false;
    function render() {
      renderQueued = false;
      if (!pixels || !ctx) { return; }
      var lut = new Uint8ClampedArray(65536);
      var lo = win.lo, span = Math.max(win.hi - win.lo, 1e-6);
      for (var v = 0; v < 65536; v++) {
        var t = Math.round((v - lo) / span * 255);
        t = t < 0 ? 0 : (t > 255 ? 255 : t);
        lut[v] = win.invert ? 255 - t : t;
      }
      var d = imageData.data, n = pixels.length;
      for (var i = 0, j = 0; i < n; i++, j += 4) { var g = lut[pixels[i]]; d[j] = g; d[j + 1] = g; d[j + 2] = g; }
      ctx.putImageData(imageData, 0, 0);
      var c = (win.lo + win.hi) / 2 * unit + offset, w = (win.hi - win.lo) * unit;
      var ci = $("wl-center"), wi = $("wl-width");
      if (ci && document.activeElement !== ci) { ci.value = String(+c.toFixed(2)); }
      if (wi && document.activeElement !== wi) { wi.value = String(+w.toFixed(2)); }
      var text = $("window-text");
      if (text) {
        text.textContent = "Window: center " + (+c.toFixed(1)) + ", width " + (+w.toFixed(1)) +
          " (image values, " + (meta.bits || "?") + "-bit)" + (win.invert ? ", inverted" : "");
      }
      viewer.setAttribute("data-window", win.lo + "," + win.hi + "," + (win.invert ? 1 : 0));
    }
    function queueRender() { if (!renderQueued) { renderQueued = true; window.requestAnimationFrame(render); } }
    function setWindow(lo, hi) { win.lo = lo; win.hi = Math.max(hi, lo + 1e-3); queueRender(); }
    function preset(name) { var p = presets[name]; if (p) { setWindow(p[0], p[1]); } }
    function setCenterWidth(c, w) {  // image units
      var cu = (c - offset) / unit, wu = Math.max(w / unit, 1e-3);
      setWindow(cu - wu / 2, cu + wu / 2);
    }

    if (ctx && viewer.getAttribute("data-pixels-url")) {
      inflate(viewer.getAttribute("data-pixels-url")).then(function (buf) {
        pixels = new Uint16Array(buf);
        if (pixels.length !== rows * cols) { throw new Error("pixels: wrong size"); }
        canvas.width = cols; canvas.height = rows;
        imageData = ctx.createImageData(cols, rows);
        for (var j = 3; j < imageData.data.length; j += 4) { imageData.data[j] = 255; }
        preset("default");
        render();
        canvas.hidden = false;
        xray.hidden = true;
        viewer.setAttribute("data-ready", "1");
      }).catch(function (err) {
        viewer.setAttribute("data-ready", "error");
        var text = $("window-text");
        if (text) { text.textContent += " (window/level unavailable: " + err.message + ")"; }
      });
    }

    // ---- mask layers and editor ------------------------------------------------------------------------------
    var mask = null, maskCanvas = $("mask-canvas"), contourCanvas = $("contour-canvas");
    var undo = [], redo = [], dirty = false;
    var maskImg = $("mask-layer"), contourImg = $("contour-layer"), probImg = $("prob-layer");

    function paintMask() {
      if (!mask) { return; }
      var mctx = maskCanvas.getContext("2d"), cctx = contourCanvas.getContext("2d");
      var fill = mctx.createImageData(cols, rows), edge = cctx.createImageData(cols, rows);
      var f = fill.data, e = edge.data;
      for (var y = 0; y < rows; y++) {
        for (var x = 0; x < cols; x++) {
          var i = y * cols + x;
          if (!mask[i]) { continue; }
          var j = i * 4;
          f[j] = MASK_RGB[0]; f[j + 1] = MASK_RGB[1]; f[j + 2] = MASK_RGB[2]; f[j + 3] = 255;
          if (x === 0 || y === 0 || x === cols - 1 || y === rows - 1 || !mask[i - 1] || !mask[i + 1] ||
              !mask[i - cols] || !mask[i + cols]) {
            e[j] = MASK_RGB[0]; e[j + 1] = MASK_RGB[1]; e[j + 2] = MASK_RGB[2]; e[j + 3] = 255;
          }
        }
      }
      mctx.putImageData(fill, 0, 0);
      cctx.putImageData(edge, 0, 0);
    }
    function historyButtons() {
      if ($("undo")) { $("undo").disabled = !undo.length; }
      if ($("redo")) { $("redo").disabled = !redo.length; }
      if ($("save-correction")) { $("save-correction").disabled = !dirty; }
      viewer.setAttribute("data-dirty", dirty ? "1" : "0");
    }
    function remember() {
      undo.push(mask.slice());
      if (undo.length > MAX_UNDO) { undo.shift(); }
      redo = [];
      dirty = true;
      historyButtons();
    }
    function undoStep() { if (undo.length) { redo.push(mask); mask = undo.pop(); dirty = true; paintMask(); historyButtons(); } }
    function redoStep() { if (redo.length) { undo.push(mask); mask = redo.pop(); dirty = true; paintMask(); historyButtons(); } }

    function stamp(cx, cy, radius, value) {
      var r2 = radius * radius;
      var y0 = Math.max(0, Math.floor(cy - radius)), y1 = Math.min(rows - 1, Math.ceil(cy + radius));
      var x0 = Math.max(0, Math.floor(cx - radius)), x1 = Math.min(cols - 1, Math.ceil(cx + radius));
      for (var y = y0; y <= y1; y++) {
        for (var x = x0; x <= x1; x++) {
          var dx = x + 0.5 - cx, dy = y + 0.5 - cy;
          if (dx * dx + dy * dy <= r2) { mask[y * cols + x] = value; }
        }
      }
    }
    function strokeTo(from, to, value) {
      var radius = brushSize() / 2;
      var dist = Math.hypot(to.x - from.x, to.y - from.y), steps = Math.max(1, Math.ceil(dist / Math.max(radius / 2, 0.5)));
      for (var s = 1; s <= steps; s++) {
        stamp(from.x + (to.x - from.x) * s / steps, from.y + (to.y - from.y) * s / steps, radius, value);
      }
    }
    function floodFill(px, py) {
      var x = Math.floor(px), y = Math.floor(py);
      if (x < 0 || y < 0 || x >= cols || y >= rows) { return; }
      var target = mask[y * cols + x], value = target ? 0 : 1;
      var stack = [y * cols + x];
      while (stack.length) {
        var i = stack.pop();
        if (mask[i] !== target) { continue; }
        var row = Math.floor(i / cols), l = i, r = i;
        while (l % cols > 0 && mask[l - 1] === target) { l--; }
        while (r % cols < cols - 1 && mask[r + 1] === target) { r++; }
        for (var k = l; k <= r; k++) {
          mask[k] = value;
          if (row > 0 && mask[k - cols] === target) { stack.push(k - cols); }
          if (row < rows - 1 && mask[k + cols] === target) { stack.push(k + cols); }
        }
      }
    }
    function brushSize() { var el = $("brush-size"); return clamp(parseFloat(el && el.value) || 8, 1, 500); }

    var maskUrl = viewer.getAttribute("data-mask-url");
    if (maskUrl && maskCanvas) {
      var img = new Image();
      img.onload = function () {
        if (img.naturalWidth !== cols || img.naturalHeight !== rows) { return; }
        var off = document.createElement("canvas");
        off.width = cols; off.height = rows;
        var octx = off.getContext("2d");
        octx.drawImage(img, 0, 0);
        var d = octx.getImageData(0, 0, cols, rows).data;
        mask = new Uint8Array(rows * cols);
        for (var i = 0, j = 0; i < mask.length; i++, j += 4) { mask[i] = d[j] > 127 && d[j + 3] > 127 ? 1 : 0; }
        maskCanvas.width = contourCanvas.width = cols;
        maskCanvas.height = contourCanvas.height = rows;
        paintMask();
        maskCanvas.hidden = contourCanvas.hidden = false;
        if (maskImg) { maskImg.hidden = true; }
        if (contourImg) { contourImg.hidden = true; }
        applyLayers();
        applyOpacity();
        viewer.setAttribute("data-mask-ready", "1");
      };
      img.src = maskUrl;
    }

    function saveCorrection() {
      if (!mask) { return; }
      var out = document.createElement("canvas");
      out.width = cols; out.height = rows;
      var octx = out.getContext("2d"), data = octx.createImageData(cols, rows), d = data.data;
      for (var i = 0, j = 0; i < mask.length; i++, j += 4) {
        var v = mask[i] ? 255 : 0; d[j] = v; d[j + 1] = v; d[j + 2] = v; d[j + 3] = 255;
      }
      octx.putImageData(data, 0, 0);
      var status = $("correction-status");
      var url = viewer.getAttribute("data-save-url");
      out.toBlob(function (blob) {
        if (!url) {  // an upload: nothing is kept on the server, the corrected mask is downloaded
          var a = document.createElement("a");
          a.href = URL.createObjectURL(blob);
          a.download = (viewer.getAttribute("data-download-stem") || "radiograph") + "_lung_mask_corrected.png";
          document.body.appendChild(a); a.click(); a.remove();
          dirty = false; historyButtons();
          if (status) { status.textContent = "Corrected mask downloaded."; }
          return;
        }
        if (status) { status.textContent = "Saving\u2026"; }
        fetch(url, { method: "POST", body: blob, headers: { "Content-Type": "image/png" }, credentials: "same-origin" })
          .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
          .then(function (res) {
            if (!res.ok) { throw new Error(res.body.message || "not saved"); }
            dirty = false; historyButtons();
            if (status) {
              status.textContent = "Saved: revision " + res.body.revision + ", " + res.body.changed_pixels +
                " pixels changed" + (res.body.seg ? ", SEG revision written" : "") + ".";
            }
            viewer.setAttribute("data-saved", String(res.body.revision));
          })
          .catch(function (err) { if (status) { status.textContent = "Not saved: " + err.message; } });
      }, "image/png");
    }

    // ---- layers and opacity ----------------------------------------------------------------------------------
    function applyLayers() {
      var showMask = layer === "overlay";
      [maskImg, contourImg].forEach(function (el) { if (el && mask === null) { el.style.visibility = showMask ? "" : "hidden"; } });
      [maskCanvas, contourCanvas].forEach(function (el) { if (el) { el.style.visibility = showMask ? "" : "hidden"; } });
      if (contourCanvas && $("outline") && !$("outline").checked) { contourCanvas.style.visibility = "hidden"; }
      if (probImg) { probImg.hidden = layer !== "prob"; }
      [["layer-image", "image"], ["layer-overlay", "overlay"], ["layer-prob", "prob"]].forEach(function (p) {
        if ($(p[0])) { $(p[0]).setAttribute("aria-pressed", String(layer === p[1])); }
      });
      viewer.setAttribute("data-layer", layer);
    }
    function setLayer(name) { layer = name; applyLayers(); }
    function applyOpacity() {
      var slider = $("opacity");
      if (!slider) { return; }
      var value = clamp(parseInt(slider.value, 10) || 0, 0, 100);
      if (maskImg) { maskImg.style.opacity = String(value / 100); }
      if (maskCanvas) { maskCanvas.style.opacity = String(value / 100); }
      if ($("opacity-value")) { $("opacity-value").textContent = value + "%"; }
    }
    if ($("opacity")) {
      $("opacity").addEventListener("input", applyOpacity);
      $("opacity").addEventListener("change", applyOpacity);
    }
    if ($("outline")) {
      $("outline").addEventListener("change", function () {
        if (contourImg) { contourImg.style.display = $("outline").checked ? "" : "none"; }
        applyLayers();
      });
    }

    // ---- tools -----------------------------------------------------------------------------------------------
    function setTool(name) {
      tool = name;
      Array.prototype.forEach.call(document.querySelectorAll("[data-tool]"), function (b) {
        b.setAttribute("aria-pressed", String(b.getAttribute("data-tool") === name));
      });
      viewer.setAttribute("data-tool", name);
      updateRing();
    }
    var ring = $("cursor-ring"), lastPointer = null;
    function updateRing() {
      if (!ring) { return; }
      var editing = (tool === "brush" || tool === "eraser") && lastPointer;
      ring.hidden = !editing;
      if (!editing) { return; }
      var d = brushSize() * view.scale, r = box();
      ring.style.width = ring.style.height = d + "px";
      ring.style.left = (lastPointer.x - r.left - d / 2) + "px";
      ring.style.top = (lastPointer.y - r.top - d / 2) + "px";
    }

    Array.prototype.forEach.call(document.querySelectorAll("[data-tool]"), function (b) {
      b.addEventListener("click", function () { setTool(b.getAttribute("data-tool")); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-preset]"), function (b) {
      b.addEventListener("click", function () { preset(b.getAttribute("data-preset")); });
    });
    function on(id, fn) { if ($(id)) { $(id).addEventListener("click", fn); } }
    on("invert", function () { win.invert = !win.invert; $("invert").setAttribute("aria-pressed", String(win.invert)); queueRender(); });
    on("zoom-fit", fit);
    on("zoom-native", native);
    on("zoom-in", function () { zoomBy(1.25); });
    on("zoom-out", function () { zoomBy(0.8); });
    on("layer-image", function () { setLayer("image"); });
    on("layer-overlay", function () { setLayer("overlay"); });
    on("layer-prob", function () { setLayer("prob"); });
    on("undo", undoStep);
    on("redo", redoStep);
    on("save-correction", saveCorrection);
    function wlInput() {
      var c = parseFloat($("wl-center").value), w = parseFloat($("wl-width").value);
      if (isFinite(c) && isFinite(w) && w > 0) { setCenterWidth(c, w); }
    }
    if ($("wl-center")) { $("wl-center").addEventListener("change", wlInput); $("wl-width").addEventListener("change", wlInput); }

    // ---- pointer: pan, window/level, brush, fill, pinch ------------------------------------------------------
    var drag = null, pointers = {};
    viewer.addEventListener("contextmenu", function (e) { e.preventDefault(); });
    viewer.addEventListener("pointerdown", function (e) {
      viewer.focus({ preventScroll: true });
      pointers[e.pointerId] = { x: e.clientX, y: e.clientY };
      var ids = Object.keys(pointers);
      if (ids.length === 2) {  // pinch
        var a = pointers[ids[0]], b = pointers[ids[1]];
        drag = { mode: "pinch", dist: Math.hypot(a.x - b.x, a.y - b.y), scale: view.scale };
        return;
      }
      viewer.setPointerCapture(e.pointerId);
      var mode = e.button === 2 || tool === "window" ? "window" : tool;
      if ((mode === "brush" || mode === "eraser" || mode === "fill") && !mask) { mode = "pan"; }
      var p = toImage(e.clientX, e.clientY);
      drag = { mode: mode, x: e.clientX, y: e.clientY, lo: win.lo, hi: win.hi, last: p };
      if (mode === "brush" || mode === "eraser") {
        remember();
        stamp(p.x, p.y, brushSize() / 2, mode === "brush" ? 1 : 0);
        paintMask();
      } else if (mode === "fill") {
        remember();
        floodFill(p.x, p.y);
        paintMask();
        drag = null;
      }
      e.preventDefault();
    });
    viewer.addEventListener("pointermove", function (e) {
      lastPointer = { x: e.clientX, y: e.clientY };
      if (pointers[e.pointerId]) { pointers[e.pointerId] = { x: e.clientX, y: e.clientY }; }
      updateRing();
      if (!drag) { return; }
      if (drag.mode === "pinch") {
        var ids = Object.keys(pointers);
        if (ids.length < 2) { return; }
        var a = pointers[ids[0]], b = pointers[ids[1]], r = box();
        zoomTo(drag.scale * Math.hypot(a.x - b.x, a.y - b.y) / Math.max(drag.dist, 1),
               (a.x + b.x) / 2 - r.left, (a.y + b.y) / 2 - r.top);
        return;
      }
      var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      if (drag.mode === "pan") {
        panBy(dx, dy); drag.x = e.clientX; drag.y = e.clientY;
      } else if (drag.mode === "window") {
        var span = drag.hi - drag.lo, full = (presets.full || [0, 65535]);
        var range = Math.max(full[1] - full[0], 1);
        var width = Math.max(span + dx * range / 400, 1), center = (drag.lo + drag.hi) / 2 - dy * range / 400;
        setWindow(center - width / 2, center + width / 2);
      } else if (drag.mode === "brush" || drag.mode === "eraser") {
        var p = toImage(e.clientX, e.clientY);
        strokeTo(drag.last, p, drag.mode === "brush" ? 1 : 0);
        drag.last = p;
        paintMask();
      }
    });
    function endPointer(e) {
      delete pointers[e.pointerId];
      if (drag && drag.mode === "pinch" && Object.keys(pointers).length < 2) { drag = null; return; }
      drag = null;
    }
    viewer.addEventListener("pointerup", endPointer);
    viewer.addEventListener("pointercancel", endPointer);
    viewer.addEventListener("pointerleave", function () { lastPointer = null; updateRing(); });
    viewer.addEventListener("wheel", function (e) {
      e.preventDefault();
      var r = box(), px = e.clientX - r.left, py = e.clientY - r.top;
      var mouseWheel = e.deltaMode === 1 || (e.deltaX === 0 && Math.abs(e.deltaY) >= 50);
      if (e.ctrlKey || mouseWheel) {  // pinch on a trackpad arrives as ctrl+wheel
        zoomBy(Math.exp(-e.deltaY * (e.ctrlKey ? 0.01 : 0.0015) * (e.deltaMode === 1 ? 30 : 1)), px, py);
      } else {  // two-finger scroll on a trackpad pans
        panBy(-e.deltaX, -e.deltaY);
      }
    }, { passive: false });

    // ---- keyboard --------------------------------------------------------------------------------------------
    document.addEventListener("keydown", function (e) {
      var tag = (e.target && e.target.tagName) || "";
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
      var key = e.key;
      if ((e.ctrlKey || e.metaKey) && !e.altKey) {
        if (key === "z" || key === "Z") { if (e.shiftKey) { redoStep(); } else { undoStep(); } e.preventDefault(); }
        else if (key === "y" || key === "Y") { redoStep(); e.preventDefault(); }
        return;
      }
      if (e.altKey) { return; }
      var step = 60, handled = true;
      switch (key) {
        case "ArrowLeft": panBy(step, 0); break;
        case "ArrowRight": panBy(-step, 0); break;
        case "ArrowUp": panBy(0, step); break;
        case "ArrowDown": panBy(0, -step); break;
        case "+": case "=": zoomBy(1.25); break;
        case "-": case "_": zoomBy(0.8); break;
        case "0": fit(); break;
        case "1": native(); break;
        case "i": case "I": $("invert") ? $("invert").click() : null; break;
        case "d": case "D": preset("default"); break;
        case "l": case "L": preset("lung"); break;
        case "u": case "U": preset("bone"); break;
        case "a": case "A": preset("full"); break;
        case "o": case "O": setLayer(layer === "overlay" ? "image" : "overlay"); break;
        case "p": case "P": if (probImg) { setLayer(layer === "prob" ? "overlay" : "prob"); } break;
        case "h": case "H": setTool("pan"); break;
        case "w": case "W": setTool("window"); break;
        case "b": case "B": if (mask) { setTool("brush"); } break;
        case "e": case "E": if (mask) { setTool("eraser"); } break;
        case "f": case "F": if (mask) { setTool("fill"); } break;
        case "[": if ($("brush-size")) { $("brush-size").value = String(Math.max(1, brushSize() - 2)); updateRing(); } break;
        case "]": if ($("brush-size")) { $("brush-size").value = String(Math.min(500, brushSize() + 2)); updateRing(); } break;
        default: handled = false;
      }
      if (handled) { e.preventDefault(); }
    });
    window.addEventListener("beforeunload", function (e) { if (dirty) { e.preventDefault(); e.returnValue = ""; } });
    window.addEventListener("resize", function () { if (view.fit) { fit(); } });

    fit();
    applyLayers();
    applyOpacity();
    historyButtons();
  }

  ready(setup);
})();

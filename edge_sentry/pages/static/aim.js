/* The camera aiming page: each message of /aim/stream is one picture (a greyscale JPEG), the boxes
   of the codes read in it (corner points, never what a code says) and the meters. The picture goes
   on a canvas and the boxes are drawn over it. `window.sentryAim` keeps what was drawn, for tests. */
"use strict";

(function () {
  const page = window.sentryPage;
  const s = page.settings;
  const el = function (id) { return document.getElementById(id); };
  const canvas = el("view");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const BOX = "#00ff66";
  const STALE_MS = 2000;
  const shown = { frames: 0, seq: 0, boxes: [], codes: 0 };
  let lastAt = 0;
  let drawing = false;
  let next = null;

  window.sentryAim = shown;
  el("venue").textContent = s.venue;
  el("entrance").textContent = s.entrance;

  function status(text, live) {
    el("status").textContent = text;
    document.body.dataset.live = live ? "1" : "0";
  }

  function meters(m) {
    el("fps").textContent = m.fps === null ? "–" : m.fps.toFixed(1);
    const e = m.exposure;
    el("exposure-bar").value = e.mean;
    el("exposure").textContent = e.verdict + " (mean " + e.mean.toFixed(0) + " of 255)";
    el("clipped").textContent = (e.black * 100).toFixed(1) + " % black, " + (e.white * 100).toFixed(1) + " % white";
    el("sharpness-bar").value = Math.log10(1 + m.sharpness);
    el("sharpness").textContent = m.sharpness.toFixed(0);
    el("code-sharpness").textContent = m.code_sharpness.length ?
      m.code_sharpness.map(function (v) { return v.toFixed(0); }).join(", ") : "–";
    el("code").dataset.seen = m.codes ? "1" : "0";
    el("code").textContent = m.codes ? (m.codes === 1 ? "a code in view (boxed)" : m.codes + " codes in view (boxed)") :
      "none in view";
  }

  function draw(m) {
    const picture = new Image();
    drawing = true;
    picture.onload = function () {
      if (canvas.width !== m.width || canvas.height !== m.height) {
        canvas.width = m.width;
        canvas.height = m.height;
      }
      ctx.drawImage(picture, 0, 0);
      ctx.strokeStyle = BOX;
      ctx.lineWidth = 3;
      ctx.lineJoin = "round";
      m.boxes.forEach(function (corners) {
        ctx.beginPath();
        corners.forEach(function (p, i) { if (i) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]); });
        ctx.closePath();
        ctx.stroke();
      });
      meters(m);
      shown.frames += 1;
      shown.seq = m.seq;
      shown.boxes = m.boxes;
      shown.codes = m.codes;
      lastAt = Date.now();
      status("live", true);
      finished();
    };
    picture.onerror = finished;
    picture.src = "data:image/jpeg;base64," + m.jpeg;
  }

  /* One picture decoded at a time; a newer one replaces any still waiting. */
  function finished() {
    drawing = false;
    if (next) { const m = next; next = null; draw(m); }
  }

  page.listen("/aim/stream", function (m) {
    if (m.event !== "aim") return;
    if (drawing) next = m; else draw(m);
  }, function (up) { if (!up) status("connection lost, reconnecting…", false); });

  setInterval(function () {
    if (lastAt && Date.now() - lastAt > STALE_MS) status("no picture from the camera", false);
  }, 500);
})();

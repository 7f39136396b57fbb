/* The staff view: the state at opening (the first message of /events?state=1), then every decision,
   alarm and health report as it comes. Rows hold time, verdict, reason and mode: what the page
   events carry, never who. */
"use strict";

(function () {
  const page = window.sentryPage;
  const s = page.settings;
  const el = function (id) { return document.getElementById(id); };
  const RECENT = 20;
  let state = null;

  el("venue").textContent = s.venue;
  el("entrance").textContent = s.entrance;
  el("assist-s").textContent = String(Math.round(s.assist_ms / 1000));

  function clock(t) {
    const d = new Date(t);
    return d.toLocaleTimeString("en-GB", { hour12: false });
  }

  function fill(list, items, render, none) {
    list.replaceChildren();
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = none;
      list.appendChild(li);
      return;
    }
    items.forEach(function (item) {
      const li = document.createElement("li");
      li.textContent = render(item);
      list.appendChild(li);
    });
  }

  function describe(event) {
    const extra = [];
    if (event.cause) extra.push(event.cause);
    if (event.open_s !== undefined) extra.push("open " + event.open_s + " s");
    if (event.policy) extra.push("policy " + event.policy);
    return clock(event.t) + "  " + event.event + (extra.length ? " (" + extra.join(", ") + ")" : "");
  }

  function renderRecent() {
    const body = el("recent").tBodies[0];
    body.replaceChildren();
    state.recent.forEach(function (e) {
      const tr = document.createElement("tr");
      tr.className = e.verdict;
      [clock(e.t), e.verdict, e.refused ? e.reason + " (" + e.refused + ")" : e.reason, e.mode]
        .forEach(function (value, i) {
          const td = document.createElement("td");
          td.textContent = value;
          if (i === 1) td.className = "verdict";
          tr.appendChild(td);
        });
      body.appendChild(tr);
    });
  }

  function renderCounts() {
    el("day").textContent = state.day;
    document.querySelectorAll("[data-count]").forEach(function (td) {
      td.textContent = String(state.counts[td.dataset.count] || 0);
    });
    const reasons = Object.keys(state.counts.reasons).sort();
    fill(el("reasons"), reasons, function (r) { return r + ": " + state.counts.reasons[r]; }, "none");
  }

  function renderOpen() {
    fill(el("open"), state.open, describe, "nothing");
    el("open-section").dataset.open = state.open.length ? "1" : "0";
  }

  function renderHealth() {
    const dl = el("health");
    dl.replaceChildren();
    const h = state.health;
    const rows = [];
    if (!h) rows.push(["report", "none yet"]);
    else {
      rows.push(["at", clock(h.t)]);
      if (h.gate) rows.push(["gate", h.gate]);
      if (h.fps !== undefined) rows.push(["camera", h.fps + " frames/s"]);
      if (h.latency_ms) rows.push(["frame to relay", "p50 " + h.latency_ms.p50 + " ms, p99 " + h.latency_ms.p99 + " ms"]);
      if (h.cpu_temp_c !== undefined) rows.push(["CPU temperature", h.cpu_temp_c + " °C"]);
      if (h.throttled) rows.push(["under-voltage now", h.throttled.now.under_voltage ? "YES" : "no"]);
      if (h.disk && h.disk.free_pct !== null) rows.push(["disk free", h.disk.free_pct + " %"]);
      if (h.outbox) rows.push(["waiting to send", h.outbox.depth + " events"]);
      if (h.link) rows.push(["fleet link", h.link]);
      if (h.uptime_s !== undefined) rows.push(["running for", Math.round(h.uptime_s / 60) + " min"]);
    }
    rows.forEach(function (r) {
      const dt = document.createElement("dt");
      dt.textContent = r[0];
      const dd = document.createElement("dd");
      dd.textContent = r[1];
      dl.append(dt, dd);
    });
  }

  function renderAll() {
    renderRecent();
    renderCounts();
    fill(el("alarms"), state.alarms, describe, "none");
    renderOpen();
    renderHealth();
  }

  const ALARMS = new Set(["door-forced", "door-held", "tailgate", "assist-expired", "fault", "camera-fault",
    "trust-invalid", "trust-stale", "clock-unsynced", "outbox-full", "disk-low"]);
  const RAISES = { "door-forced": "door", "door-held": "door", "camera-fault": "camera" };
  const CLEARS = { "door-closed": "door", "camera-recovered": "camera" };

  function rollDay(t) {
    const d = new Date(t);
    const day = d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" +
      String(d.getDate()).padStart(2, "0");
    if (day > state.day) {
      state.day = day;
      state.counts = { decisions: 0, accept: 0, deny: 0, manual: 0, exit: 0, assisted: 0, reasons: {}, alarms: {} };
    }
  }

  function openKey(e) {
    if (e.event === "fault") return "fault:" + e.cause;
    return RAISES[e.event];
  }

  function onEvent(e) {
    if (e.event === "state") { state = e; renderAll(); return; }
    if (state === null) return;
    if (e.event === "health") { state.health = e.report; renderHealth(); return; }
    rollDay(e.t);
    if (e.event === "scan") {
      state.recent.unshift(e);
      state.recent.length = Math.min(state.recent.length, RECENT);
      const c = state.counts;
      c.decisions += 1;
      c[e.verdict] = (c[e.verdict] || 0) + 1;
      if (e.mode !== "scan") c[e.mode] = (c[e.mode] || 0) + 1;
      if (e.verdict === "deny") {
        const r = e.refused || e.reason;
        c.reasons[r] = (c.reasons[r] || 0) + 1;
      }
      renderRecent();
      renderCounts();
      return;
    }
    if (RAISES[e.event] || e.event === "fault") {
      const key = openKey(e);
      state.open = state.open.filter(function (o) { return openKey(o) !== key; });
      state.open.push(e);
    } else if (CLEARS[e.event]) {
      state.open = state.open.filter(function (o) { return openKey(o) !== CLEARS[e.event]; });
    } else if (e.event === "fault-cleared") {
      state.open = state.open.filter(function (o) { return openKey(o) !== "fault:" + e.cause; });
    }
    if (ALARMS.has(e.event)) {
      state.alarms.unshift(e);
      state.alarms.length = Math.min(state.alarms.length, RECENT);
    }
    renderOpen();
    fill(el("alarms"), state.alarms, describe, "none");
  }

  function onLink(up) {
    el("link").dataset.up = up ? "1" : "0";
    el("link").textContent = up ? "live" : "reconnecting…";
  }

  page.listen("/events?state=1", onEvent, onLink);
})();

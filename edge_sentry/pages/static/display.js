/* The visitor display: the idle screen until a decision, then its result for display.result_s.
   A paper code waits for staff (amber) until staff let the visitor in or the assist window ends.
   Each shown result is also noted in window.sentryShown (the event's time, when the page changed, when
   the next frame was drawn, and what it showed) for the display benchmark and the tests: no more than
   the page shows, for the last 20 results only, as many as the staff view keeps (a benchmark that
   needs every result of its run sets window.sentryShownKeep to more first). */
"use strict";

(function () {
  const page = window.sentryPage;
  const s = page.settings;
  const body = document.body;
  const el = function (id) { return document.getElementById(id); };
  const KEEP = 20;
  let timer = null;
  const faults = new Set();
  window.sentryShown = [];

  el("venue").textContent = s.venue;
  el("entrance").textContent = s.entrance;
  el("idle-title").textContent = page.text("idle_title");
  el("idle-hint").textContent = page.text("idle_hint");
  el("idle-paper").textContent = page.text("idle_paper");
  el("fault").textContent = page.text("fault");

  function idle() {
    timer = null;
    body.dataset.state = "idle";
    delete body.dataset.reason;
    delete body.dataset.mode;
  }

  function show(event, state, holdMs) {
    if (timer !== null) clearTimeout(timer);
    body.dataset.state = state;
    body.dataset.reason = event.reason;
    body.dataset.mode = event.mode;
    el("headline").textContent = page.text(state);
    el("message").textContent = (event.message || {})[s.language] || "";
    const entry = { t: event.t, at: page.wallNow(), frame: null, state: state, verdict: event.verdict,
                    reason: event.reason, mode: event.mode };
    requestAnimationFrame(function () { entry.frame = page.wallNow(); });  // the frame that draws it
    window.sentryShown.push(entry);
    while (window.sentryShown.length > (window.sentryShownKeep || KEEP)) window.sentryShown.shift();
    timer = setTimeout(idle, holdMs);
  }

  function onScan(event) {
    if (event.verdict === "accept") show(event, "accept", s.result_ms);
    else if (event.reason === "assist" && !event.refused) show(event, "assist", s.assist_ms);
    else show(event, "deny", s.result_ms);
  }

  function setFault(key, on) {
    if (on) faults.add(key); else faults.delete(key);
    if (faults.size) body.dataset.fault = "1"; else delete body.dataset.fault;
  }

  function onEvent(event) {
    switch (event.event) {
      case "scan": onScan(event); break;
      case "assist-expired":
        if (body.dataset.state === "assist") { clearTimeout(timer); idle(); }
        break;
      case "fault": setFault("fault:" + event.cause, true); break;
      case "fault-cleared": setFault("fault:" + event.cause, false); break;
      case "camera-fault": setFault("camera", true); break;
      case "camera-recovered": setFault("camera", false); break;
      case "state":
        faults.clear();
        (event.open || []).forEach(function (c) {
          if (c.event === "fault") faults.add("fault:" + c.cause);
          if (c.event === "camera-fault") faults.add("camera");
        });
        setFault("", false);
        break;
      default: break;
    }
  }

  function onLink(up) {
    el("offline").textContent = up ? "" : page.text("offline");
  }

  idle();
  page.listen("/events?state=1", onEvent, onLink);
})();

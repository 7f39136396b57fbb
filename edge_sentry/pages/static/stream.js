/* The pages' link to the sentry: its settings, and its /events stream (server push, never polling).
   EventSource connects again by itself when the stream ends (the server says how soon); a refused
   stream (503: the sentry has as many open as it serves) ends an EventSource for good, so the page
   opens a new one a little later. */
"use strict";

window.sentryPage = (function () {
  const REFUSED_RETRY_MS = 5000;
  const settings = JSON.parse(document.getElementById("settings").textContent);

  function text(key, lang) {
    const entry = settings.ui[key] || {};
    return entry[lang || settings.language] || entry.en || "";
  }

  /* onEvent(object) for each message; onLink(true|false) as the stream opens and drops. */
  function listen(path, onEvent, onLink) {
    const source = new EventSource(path);
    source.onopen = function () { if (onLink) onLink(true); };
    source.onerror = function () {
      if (onLink) onLink(false);
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(function () { listen(path, onEvent, onLink); }, REFUSED_RETRY_MS);
      }
    };
    source.onmessage = function (message) {
      let event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      onEvent(event);
    };
    return source;
  }

  /* Wall-clock milliseconds now, as precise as the browser allows (an event's `t` is the sentry's). */
  function wallNow() { return performance.timeOrigin + performance.now(); }

  return { settings: settings, text: text, listen: listen, wallNow: wallNow };
})();

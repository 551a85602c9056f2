/* notify.js - the reference page's banners: opens the thread's event
 * stream (/events, Server-Sent Events) and shows a yellow warning banner
 * for checkpoint_flush_error and a red critical banner with a "Contact
 * Support" button for checkpoint_flush_critical_error. One banner per event
 * id, newest first, each dismissible. Every text that comes from an event
 * (message, error_details: they can hold database error text) is put in
 * with textContent, never as HTML. */
"use strict";

(function () {
  var params = new URLSearchParams(window.location.search);
  var threads = params.getAll("thread_id");
  var tokens = params.getAll("token");
  var banners = document.getElementById("banners");
  var connection = document.getElementById("connection");
  var seen = new Set();       /* event ids shown or dismissed */
  var supportUrl = "mailto:support@example.com";

  document.getElementById("thread-label").textContent =
    threads.length ? "thread " + threads.join(", ") : "no thread_id given";

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function setState(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }

  function show(kind, id, data) {
    if (seen.has(id)) { return; }
    seen.add(id);
    var critical = kind === "checkpoint_flush_critical_error";
    var b = el("div", "banner " + (critical ? "banner-critical" : "banner-warning"));
    b.setAttribute("role", critical ? "alert" : "status");
    b.dataset.eventId = id;
    b.dataset.type = kind;
    b.appendChild(el("p", "banner-title",
      critical ? "Execution data may be lost" : "Execution logs may be incomplete"));
    b.appendChild(el("p", "banner-message", data.message || ""));
    if (data.error_details) {
      var d = el("details", "banner-details");
      d.appendChild(el("summary", null, "Technical details"));
      d.appendChild(el("pre", null, data.error_details));
      b.appendChild(d);
    }
    if (data.timestamp) { b.appendChild(el("p", "banner-time", data.timestamp)); }
    if (critical) {
      var a = el("a", "contact-support", "Contact Support");
      a.href = supportUrl;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      b.appendChild(a);
    }
    var x = el("button", "banner-dismiss", "\u00d7");
    x.type = "button";
    x.setAttribute("aria-label", "Dismiss");
    x.addEventListener("click", function () { b.remove(); });
    b.appendChild(x);
    banners.insertBefore(b, banners.firstChild);  /* newest first */
  }

  function onEvent(ev) {
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (data === null || typeof data !== "object") { return; }
    show(ev.type, ev.lastEventId || ev.data, data);
  }

  function open() {
    if (!threads.length) { setState("error", "add ?thread_id=ID to the address"); return; }
    var q = new URLSearchParams();
    threads.forEach(function (t) { q.append("thread_id", t); });
    tokens.forEach(function (t) { q.append("token", t); });
    var es = new EventSource("events?" + q.toString());
    es.addEventListener("open", function () { setState("open", "live"); });
    es.addEventListener("error", function () {
      setState("error", es.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    });
    es.addEventListener("checkpoint_flush_error", onEvent);
    es.addEventListener("checkpoint_flush_critical_error", onEvent);
  }

  fetch("config.json").then(function (r) { return r.json(); }).then(function (c) {
    if (c && typeof c.support_url === "string" && /^(https?:|mailto:)/.test(c.support_url)) {
      supportUrl = c.support_url;
    }
  }).catch(function () {}).then(open);
})();

// Keeps a dashboard page live: listens to the server's events (the kinds in <body data-live>) and, when one
// arrives, fetches the page again and swaps its live region (#live) in place. The forms outside it keep what is
// typed; while the keyboard focus is inside the region the swap waits until it leaves, so that a swap never takes
// the focus away. A hidden tab closes its event stream (browsers allow few connections per server) and catches up
// when shown again. Without JavaScript the pages are the same, only static.
(function () {
  "use strict";
  var kinds = (document.body.getAttribute("data-live") || "").split(/\s+/).filter(Boolean);
  var status = document.getElementById("live-status");
  if (!kinds.length || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  function say(state, text) {
    document.body.setAttribute("data-live-state", state);
    if (status) { status.textContent = text; }
  }
  function focusInLive() {
    var region = document.getElementById("live"), el = document.activeElement;
    return !!(region && el && el !== region && region.contains(el));
  }
  var inflight = false, again = false, held = false;
  function refresh() {
    if (inflight) { again = true; return; }
    if (focusInLive()) { held = true; say("held", "paused while you are in it"); return; }
    if (held) { held = false; if (events) { say("open", "live"); } }
    inflight = true;
    fetch(location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        if (focusInLive()) { held = true; return; } // the focus moved in while the page was fetched
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["live", "model-version"].forEach(function (id) {
          var fresh = doc.getElementById(id), cur = document.getElementById(id);
          if (fresh && cur && fresh.innerHTML !== cur.innerHTML) { cur.innerHTML = fresh.innerHTML; }
        });
        document.documentElement.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next event tries again */ })
      .then(function () {
        inflight = false;
        if (again) { again = false; refresh(); }
      });
  }
  document.addEventListener("focusout", function () {
    setTimeout(function () { // the new focus is known once the event is over
      if (held && !focusInLive()) { held = false; if (events) { say("open", "live"); } refresh(); }
    }, 0);
  });
  var events = null;
  function open() {
    if (events) { return; }
    events = new EventSource("/ui/events?kinds=" + encodeURIComponent(kinds.join(",")));
    kinds.forEach(function (k) { events.addEventListener(k, refresh); });
    events.onopen = function () { if (!held) { say("open", "live"); } };
    events.onerror = function () { say("error", "reconnecting…"); };
  }
  function close() {
    if (events) { events.close(); events = null; }
    say("paused", "paused while hidden");
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { close(); } else { open(); refresh(); }
  });
  if (document.hidden) { say("paused", "paused while hidden"); } else { open(); }
})();

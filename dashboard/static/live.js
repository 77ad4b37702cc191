// Keeps a dashboard page live: listens to the server's events (the kinds in <body data-live>) and, when one
// arrives, fetches the page again and swaps its live region (#live) in place: forms, focus and scroll stay. Without
// JavaScript the pages are the same, only static.
(function () {
  "use strict";
  var kinds = (document.body.getAttribute("data-live") || "").split(/\s+/).filter(Boolean);
  var status = document.getElementById("live-status");
  if (!kinds.length || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var inflight = false, again = false;
  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    fetch(location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
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
  var events = new EventSource("/ui/events?kinds=" + encodeURIComponent(kinds.join(",")));
  kinds.forEach(function (k) { events.addEventListener(k, refresh); });
  events.onopen = function () { if (status) { status.textContent = "live"; } document.body.setAttribute("data-live-state", "open"); };
  events.onerror = function () { if (status) { status.textContent = "reconnecting…"; } document.body.setAttribute("data-live-state", "error"); };
})();

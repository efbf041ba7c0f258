// lumiflow dashboard: small, framework-free progressive enhancement.
// Pages work without it; with it, parts marked data-live refresh themselves and logs stream.
(function () {
  "use strict";

  var LIVE_HEADERS = { "X-Lumiflow-Live": "1" };

  function signedOut() {
    var note = document.getElementById("signed-out");
    if (note) return;
    note = document.createElement("p");
    note.id = "signed-out";
    note.className = "notice";
    note.textContent = "Your session ended: reload the page to sign in again.";
    document.querySelector("main").prepend(note);
  }

  // An element with data-live="URL" is replaced by the (server-escaped) HTML at URL every
  // data-interval ms while the page is visible, until the server marks it final.
  function live(el) {
    if (el.hasAttribute("data-final")) return;
    var interval = Number(el.getAttribute("data-interval") || 2000);
    function schedule() { window.setTimeout(tick, interval); }
    function tick() {
      if (document.hidden) { schedule(); return; }
      fetch(el.getAttribute("data-live"), { headers: LIVE_HEADERS, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 401) { signedOut(); return; }
          if (!response.ok) { schedule(); return; }
          var final = response.headers.get("X-Lumiflow-Final");
          return response.text().then(function (html) {
            el.innerHTML = html;
            el.setAttribute("data-updated", String(Date.now()));
            if (final) { el.setAttribute("data-final", ""); } else { schedule(); }
          });
        })
        .catch(schedule);
    }
    schedule();
  }

  // <pre data-log="URL">: server-sent events, each a JSON string appended as text (never HTML).
  function follow(pre) {
    var state = document.getElementById("log-state");
    var source = new EventSource(pre.getAttribute("data-log"));
    source.onmessage = function (event) {
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(JSON.parse(event.data)));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    };
    source.addEventListener("end", function () {
      source.close();
      pre.setAttribute("data-done", "");
      if (state) state.textContent = "The job has finished; this is the whole log.";
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED && state) {
        state.textContent = "The live log stopped; reload the page to resume.";
      }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(live);
    document.querySelectorAll("pre[data-log]").forEach(follow);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  });
})();

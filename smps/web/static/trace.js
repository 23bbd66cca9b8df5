// SMPS admin UI, traced messages: new rows arrive over Server-Sent Events and go on
// top of the list (rendered by the server). The columns are fixed and the browser's
// scroll anchoring keeps what the reader looks at in place. Plain JavaScript.
"use strict";

(function () {
  function startLive(box) {
    var state = document.querySelector("[data-trace-state]");
    var tbody = box.querySelector("tbody");
    var empty = document.querySelector("[data-trace-empty]");
    var keep = parseInt(box.dataset.keep, 10) || 100;
    var paused = false;
    var waiting = [];
    var arrived = 0;

    function liveText() {
      return arrived ? "Live · " + arrived + " new since the page loaded" : "Live · waiting for traced messages";
    }

    function say(text) {
      if (state && state.firstChild && state.firstChild.nodeType === 3) {
        state.firstChild.nodeValue = text;
      }
    }

    function show(html) {
      var template = document.createElement("template");
      template.innerHTML = html;
      var rows = Array.prototype.filter.call(template.content.querySelectorAll("tr"), function (row) {
        // After a reconnect the stream starts again from the page's newest row.
        return !tbody.querySelector('tr[data-id="' + row.dataset.id + '"]');
      });
      if (!rows.length) return;
      rows.forEach(function (row) { row.classList.add("arrived"); });
      tbody.prepend.apply(tbody, rows);
      arrived += rows.length;
      box.classList.remove("is-empty");
      if (empty) empty.hidden = true;
      // Keep the list bounded; "Older" then continues after the last row kept.
      while (tbody.rows.length > keep) tbody.deleteRow(-1);
      var older = document.querySelector("[data-trace-older]");
      var last = tbody.rows[tbody.rows.length - 1];
      if (older && last && tbody.rows.length === keep) {
        var url = new URL(older.href);
        url.searchParams.set("cursor", last.dataset.cursor);
        older.href = url.toString();
      }
    }

    var button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = "Pause";
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", function () {
      paused = !paused;
      button.textContent = paused ? "Resume" : "Pause";
      button.setAttribute("aria-pressed", String(paused));
      if (!paused) {
        waiting.forEach(show);
        waiting = [];
        say(liveText());
      } else {
        say("Paused · new messages are held");
      }
    });
    if (state) {
      state.appendChild(document.createTextNode(" "));
      state.appendChild(button);
    }

    var source = new EventSource(box.dataset.liveUrl);
    source.onopen = function () {
      if (!paused) say(liveText());
    };
    source.onmessage = function (event) {
      var data = JSON.parse(event.data);
      if (paused) {
        waiting.push(data.html);
        say("Paused · " + waiting.length + " updates held");
        return;
      }
      show(data.html);
      say(liveText());
    };
    source.onerror = function () {
      say("Live updates interrupted; reconnecting…");
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-trace-list][data-live-url]");
    if (box && window.EventSource) startLive(box);
  });
})();

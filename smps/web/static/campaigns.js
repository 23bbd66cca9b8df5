// SMPS admin UI, campaigns: the table sorts by a click on a column's title, and its
// rows come anew over Server-Sent Events (rendered by the server) while the sort
// stays. An update waits while a button in the table has the focus, so nothing
// moves under the keyboard. Plain JavaScript, no libraries.
"use strict";

(function () {
  function sortValue(row, index, type) {
    var cell = row.cells[index];
    var value = cell ? cell.dataset.sort || "" : "";
    return type === "number" ? parseFloat(value) || 0 : value.toLowerCase();
  }

  function makeSortable(table) {
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var sort = { index: 1, descending: true }; // the server's order: most messages first
    heads.forEach(function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () {
        var numeric = th.dataset.type === "number";
        sort = {
          index: index,
          // Again on the same column: the other way; a new one: numbers biggest first.
          descending: sort.index === index ? !sort.descending : numeric,
        };
        apply();
      });
    });

    function apply() {
      var type = heads[sort.index].dataset.type;
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = sortValue(a, sort.index, type);
        var y = sortValue(b, sort.index, type);
        var order = x < y ? -1 : x > y ? 1 : 0;
        return sort.descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      heads.forEach(function (th, index) {
        if (index === sort.index) th.setAttribute("aria-sort", sort.descending ? "descending" : "ascending");
        else th.removeAttribute("aria-sort");
      });
    }
    return apply;
  }

  function startLive(box, resort) {
    var state = document.querySelector("[data-campaigns-state]");
    var empty = document.querySelector("[data-campaigns-empty]");
    var body = box.querySelector("tbody");
    var waiting = null;

    function say(text) {
      if (state) state.textContent = text;
    }

    function show(html) {
      if (body.contains(document.activeElement)) {
        waiting = html; // shown once the focus leaves the table
        return;
      }
      waiting = null;
      body.innerHTML = html;
      resort();
      box.classList.toggle("is-empty", !body.rows.length);
      if (empty) empty.hidden = body.rows.length > 0;
      say("Live · updated " + new Date().toLocaleTimeString());
    }

    body.addEventListener("focusout", function () {
      setTimeout(function () {
        if (waiting !== null) show(waiting);
      }, 0);
    });
    var source = new EventSource(box.dataset.liveUrl);
    source.onopen = function () {
      say("Live");
    };
    source.onmessage = function (event) {
      show(JSON.parse(event.data).html);
    };
    source.onerror = function () {
      say("Live updates interrupted; reconnecting…");
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.querySelector("[data-campaigns]");
    if (!box) return;
    var resort = makeSortable(box.querySelector("table"));
    if (box.dataset.liveUrl && window.EventSource) startLive(box, resort);
  });
})();

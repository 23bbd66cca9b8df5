// SMPS admin UI: live dashboard numbers over Server-Sent Events, the verdict
// chart refreshed once a minute, and a confirmation before destructive forms (those
// a live update brings too). Plain browser JavaScript, no libraries.
"use strict";

(function () {
  function setText(el, text) {
    text = String(text);
    if (el.textContent !== text) {
      el.textContent = text;
      return true;
    }
    return false;
  }

  function pick(data, path) {
    return path.split(".").reduce(function (v, k) { return v == null ? v : v[k]; }, data);
  }

  function addBindRow(tbody, account) {
    var row = document.createElement("tr");
    row.dataset.account = account;
    var name = document.createElement("th");
    name.scope = "row";
    name.textContent = account;
    var mode = document.createElement("td");
    mode.textContent = "–";
    var binds = document.createElement("td");
    binds.className = "num";
    var count = document.createElement("span");
    count.className = "count";
    count.dataset.liveBind = account;
    binds.appendChild(count);
    var latency = document.createElement("td");
    latency.className = "num";
    latency.dataset.liveLatency = account;
    var timeouts = document.createElement("td");
    timeouts.className = "num";
    timeouts.textContent = "–";
    [name, mode, binds, latency, timeouts].forEach(function (c) { row.appendChild(c); });
    tbody.appendChild(row);
  }

  function apply(data) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var value = pick(data, el.dataset.live);
      if (value == null) return;
      setText(el, value);
      if (el.dataset.live === "role") el.className = "badge role-" + value;
    });
    var tbody = document.querySelector("[data-live-binds]");
    if (tbody) {
      Object.keys(data.ne_binds).forEach(function (account) {
        if (!tbody.querySelector('[data-live-bind="' + CSS.escape(account) + '"]')) addBindRow(tbody, account);
      });
    }
    document.querySelectorAll("[data-live-bind]").forEach(function (el) {
      if (setText(el, data.ne_binds[el.dataset.liveBind] || 0)) {
        el.classList.remove("changed");
        void el.offsetWidth; // restart the highlight
        el.classList.add("changed");
      }
    });
    document.querySelectorAll("[data-live-latency]").forEach(function (el) {
      setText(el, data.latency[el.dataset.liveLatency] || "–");
    });
    document.querySelectorAll("[data-live-smsc]").forEach(function (el) {
      var value = data.smsc[el.dataset.liveSmsc];
      if (value != null) setText(el, value);
    });
  }

  function startLive(root) {
    var state = document.querySelector("[data-live-state]");
    var source = new EventSource(root.dataset.liveUrl);
    source.onmessage = function (event) {
      apply(JSON.parse(event.data));
      if (state) setText(state, "Live · updated " + new Date().toLocaleTimeString());
    };
    source.onerror = function () {
      if (state) setText(state, "Live updates interrupted; reconnecting…");
    };
  }

  // On a narrow screen the chart scrolls sideways; the newest minutes are on the right.
  function showNewest(box) {
    box.scrollLeft = box.scrollWidth;
  }

  function refreshChart(box) {
    fetch(box.dataset.chartUrl, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (svg) {
        if (!svg) return;
        var doc = new DOMParser().parseFromString(svg, "image/svg+xml");
        var fresh = doc.documentElement;
        if (fresh && fresh.nodeName === "svg") {
          box.replaceChildren(document.importNode(fresh, true));
          showNewest(box);
        }
      })
      .catch(function () { /* keep the chart we have; the next minute tries again */ });
  }

  // On the document, so forms that a live update brings ask too.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-live-root]");
    if (root && window.EventSource) startLive(root);
    var chart = document.querySelector("[data-chart-url]");
    if (chart) {
      showNewest(chart);
      setInterval(function () { refreshChart(chart); }, 60000);
    }
  });
})();

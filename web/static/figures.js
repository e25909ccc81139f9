/* The service figures for supervisors (web/pages.py figures_page): the last days of the quality
 * inspection's daily figures from /desk/api/quality/figures, drawn with Chart.js (served by the
 * web server itself, /static/vendor) and listed in a table. Text only (textContent). Without
 * Chart.js the table and the list still show, and the status line says why there is no chart. */
(function () {
  "use strict";
  var statusLine = document.getElementById("figures-status");
  var DAYS = 14;
  var PERCENT = { y: { min: 0, max: 1, ticks: { callback: function (value) { return Math.round(value * 100) + "%"; } } } };

  function percent(rate) { return (rate * 100).toFixed(1) + "%"; }

  function line(id, labels, series) {
    return new window.Chart(document.getElementById(id), {
      type: "line",
      data: { labels: labels, datasets: series.map(function (one) {
        return { label: one[0], data: one[1], tension: 0.2 };
      }) },
      options: { animation: false, scales: PERCENT }
    });
  }

  function reasonsChart(days) {
    var totals = {};
    days.forEach(function (day) {
      day.handover_reasons.forEach(function (pair) { totals[pair[0]] = (totals[pair[0]] || 0) + pair[1]; });
    });
    var reasons = Object.keys(totals).sort(function (a, b) { return totals[b] - totals[a]; });
    return new window.Chart(document.getElementById("reasons-chart"), {
      type: "bar",
      data: { labels: reasons, datasets: [{ label: "转人工次数", data: reasons.map(function (r) { return totals[r]; }) }] },
      options: { animation: false, indexAxis: "y" }
    });
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function table(days) {
    var body = document.querySelector("#figures-table tbody");
    body.textContent = "";
    days.forEach(function (day) {
      var row = document.createElement("tr");
      cell(row, day.date);
      cell(row, String(day.conversations));
      cell(row, percent(day.containment_rate));
      cell(row, percent(day.handover_rate));
      cell(row, day.identity_checks ? percent(day.identity_pass_rate) : "—");
      cell(row, day.identified_conversations ? percent(day.first_contact_resolution) : "—");
      cell(row, String(day.average_handling_seconds));
      cell(row, String(day.voice_calls));
      // Outbound calls the dialler placed, answered or not (older figures have none: a dash).
      cell(row, day.outbound_dials === undefined ? "—" : day.outbound_dials + "（" + day.outbound_answered + " 接通）");
      body.appendChild(row);
    });
    counted("low-confidence", days.length ? days[days.length - 1].low_confidence : []);
    counted("knowledge-answers", days.length ? days[days.length - 1].knowledge_answers || [] : []);
    counted("unanswered-by-entry", days.length ? days[days.length - 1].unanswered_by_entry || [] : []);
    counted("outbound-skipped", days.length ? days[days.length - 1].outbound_skipped || [] : []);
  }

  /* The latest day's [text, count] pairs as a list: what customers said, or the entries that answered. */
  function counted(id, pairs) {
    var list = document.getElementById(id);
    list.textContent = "";
    pairs.forEach(function (pair) {
      var item = document.createElement("li");
      item.textContent = pair[0] + "（" + pair[1] + " 次）";
      list.appendChild(item);
    });
  }

  function draw(days) {
    table(days);
    if (!window.Chart) {
      statusLine.textContent = "图表组件未安装（make setup 会安装 Chart.js），以下仅列出数据。";
      return;
    }
    var labels = days.map(function (day) { return day.date; });
    function series(name) { return days.map(function (day) { return day[name]; }); }
    line("rates-chart", labels, [["自助解决率", series("containment_rate")], ["转人工率", series("handover_rate")],
                                 ["核身通过率", series("identity_pass_rate")],
                                 ["首次解决率", series("first_contact_resolution")]]);
    line("calls-chart", labels, [["打断率", series("barge_in_rate")], ["静默率", series("silence_rate")]]);
    reasonsChart(days);
    statusLine.textContent = days.length ? "最近 " + days.length + " 天。" : "还没有会话数据。";
  }

  fetch("/desk/api/quality/figures?days=" + DAYS, { credentials: "same-origin" })
    .then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error((body.detail && body.detail.message) || "服务指标暂时无法获取。");
        return body.days;
      });
    })
    .then(draw)
    .catch(function (error) { statusLine.textContent = error.message; });
})();

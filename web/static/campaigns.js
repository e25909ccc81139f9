/* Outbound campaigns for supervisors: each campaign's state, progress and outcomes (every word in
 * Chinese from the server, web/labels.py), with 启动 / 暂停 / 停止 and the CSV of outcomes. Text
 * only (textContent), refreshed every 10 s and after each action. */
(function () {
  "use strict";
  var REFRESH_MS = 10000;
  var list = document.getElementById("campaigns");
  var statusLine = document.getElementById("campaigns-status");
  var ACTIONS = [["active", "启动"], ["paused", "暂停"], ["stopped", "停止"]];

  var el = window.DeskDom.el;
  var field = window.DeskDom.field;

  function counts(pairs) {
    return pairs.length ? pairs.map(function (pair) { return pair[0] + " " + pair[1]; }).join("，") : "—";
  }

  function card(campaign) {
    var item = el("li", "card campaign-" + campaign.state);
    item.dataset.campaignId = campaign.id;
    item.appendChild(el("h3", "", campaign.name + " · " + campaign.state_name));
    var facts = el("dl");
    field(facts, "业务", campaign.flow_name);
    field(facts, "呼叫时段", campaign.window);
    field(facts, "最近选取名单", campaign.selected_on);
    if (campaign.error) field(facts, "问题", campaign.error);
    field(facts, "客户进度", counts(campaign.series));
    field(facts, "呼叫结果", counts(campaign.calls));
    field(facts, "通话结果", counts(campaign.outcomes));
    field(facts, "按规则跳过", counts(campaign.skipped));
    field(facts, "按规则延后", counts(campaign.deferred));
    item.appendChild(facts);
    ACTIONS.forEach(function (action) {
      if (action[0] === campaign.state) return;
      if (action[0] === "active" && (!campaign.enabled || campaign.state === "refused")) return;
      var button = el("button", "control", action[1]);
      button.type = "button";
      button.setAttribute("aria-label", action[1] + "：" + campaign.name);
      button.addEventListener("click", function () { control(campaign, action, button); });
      item.appendChild(button);
    });
    var csv = el("a", "export", "导出结果 CSV");
    csv.href = "/desk/campaigns/" + encodeURIComponent(campaign.id) + "/outcomes.csv";
    item.appendChild(csv);
    return item;
  }

  function control(campaign, action, button) {
    // Stopping skips every call still queued for good: ask first.
    if (action[0] === "stopped" && !window.confirm("停止后，排队中的呼叫将全部取消。确定停止「" + campaign.name + "」吗？")) return;
    button.disabled = true;
    fetch("/desk/api/campaigns/" + encodeURIComponent(campaign.id) + "/control", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ state: action[0] })
    }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.json().then(function (body) {
        statusLine.textContent = response.ok ? campaign.name + "：" + body.state_name
          : action[1] + "失败：" + ((body.detail && body.detail.message) || response.status);
      });
    }).catch(function () { statusLine.textContent = "网络错误，请重试"; }).then(load);
  }

  function load() {
    fetch("/desk/api/campaigns", { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.json().then(function (body) {
        if (!response.ok) { statusLine.textContent = (body.detail && body.detail.message) || "无法获取外呼活动"; return; }
        list.textContent = "";
        if (!body.length) list.appendChild(el("li", "empty", "没有外呼活动"));
        body.forEach(function (campaign) { list.appendChild(card(campaign)); });
        document.body.dataset.updated = String(Date.now());
      });
    }).catch(function () { statusLine.textContent = "无法获取外呼活动，正在重试…"; });
  }

  load();
  setInterval(load, REFRESH_MS);
})();

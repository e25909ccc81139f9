/* Agent desk: polls the web server's queue API every 2 s and renders hand-overs and pending
 * reviews with textContent only (summaries carry the customer's own words). */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var PRIORITY = { emergency: "紧急", high: "高", normal: "普通" };
  var handoffList = document.getElementById("handoffs");
  var reviewList = document.getElementById("reviews");
  var statusLine = document.getElementById("desk-status");

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function field(list, label, value) {
    list.appendChild(el("dt", "", label));
    list.appendChild(el("dd", "", value === null || value === undefined || value === "" ? "—" : value));
  }

  function handoffCard(handoff) {
    var card = el("li", "card priority-" + handoff.priority);
    card.dataset.handoffId = handoff.handoff_id;
    card.appendChild(el("h3", "", (handoff.flow || "未知流程") + " · " + (PRIORITY[handoff.priority] || handoff.priority)));
    var facts = el("dl");
    field(facts, "客户", handoff.customer_id);
    field(facts, "核身等级", handoff.verified_level);
    field(facts, "渠道", handoff.channel);
    field(facts, "原因", handoff.reason);
    field(facts, "摘要", handoff.summary);
    field(facts, "时间", handoff.created_at);
    card.appendChild(facts);
    return card;
  }

  function reviewCard(review) {
    var card = el("li", "card");
    card.dataset.reviewId = review.review_id;
    card.appendChild(el("h3", "", review.action));
    var facts = el("dl");
    field(facts, "客户", review.customer_id);
    field(facts, "参数", JSON.stringify(review.params));
    field(facts, "风控规则", (review.reasons || []).join("、"));
    field(facts, "时间", review.created_at);
    card.appendChild(facts);
    var note = el("input", "note");
    note.setAttribute("aria-label", "审核备注");
    note.placeholder = "审核备注（可选）";
    card.appendChild(note);
    [[true, "批准"], [false, "拒绝"]].forEach(function (choice) {
      var button = el("button", choice[0] ? "approve" : "reject", choice[1]);
      button.type = "button";
      button.setAttribute("aria-label", choice[1] + "：" + review.action + " " + review.customer_id);
      button.addEventListener("click", function () { decide(review.review_id, choice[0], note.value, card); });
      card.appendChild(button);
    });
    return card;
  }

  function replaceAll(list, items, makeCard, emptyText) {
    list.textContent = "";
    if (!items.length) list.appendChild(el("li", "empty", emptyText));
    items.forEach(function (item) { list.appendChild(makeCard(item)); });
  }

  function decide(reviewId, approve, note, card) {
    card.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    fetch("/desk/api/reviews/" + encodeURIComponent(reviewId) + "/decision", {
      method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
      body: JSON.stringify({ approve: approve, note: note })
    }).then(function (response) {
      return response.json().then(function (body) {
        statusLine.textContent = response.ok
          ? (approve ? "已批准" : "已拒绝") + "：" + reviewId + "（" + body.status + "）"
          : "操作失败：" + ((body.detail && body.detail.message) || response.status);
        poll();
      });
    }).catch(function () { statusLine.textContent = "网络错误，请重试"; });
  }

  function poll() {
    fetch("/desk/api/queue", { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.ok ? response.json() : null;
    }).then(function (queue) {
      if (!queue) return;
      // Don't wipe a note an agent is typing: skip the refresh while a review card has focus.
      if (!reviewList.contains(document.activeElement)) {
        replaceAll(reviewList, queue.reviews, reviewCard, "暂无待审核操作");
      }
      replaceAll(handoffList, queue.handoffs, handoffCard, "暂无等待中的客户");
      document.body.dataset.updated = String(Date.now());
    }).catch(function () { statusLine.textContent = "无法获取队列，正在重试…"; });
  }

  poll();
  setInterval(poll, POLL_MS);
})();

/* Agent desk: polls the web server's queue API every 2 s for the chosen filters and page, and
 * renders hand-overs and pending reviews with textContent only (summaries carry the customer's
 * own words). The server sends every hand-over word in Chinese (web/labels.py); ids of flows
 * and levels never reach this script. */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var handoffList = document.getElementById("handoffs");
  var reviewList = document.getElementById("reviews");
  var statusLine = document.getElementById("desk-status");
  var filters = document.getElementById("handoff-filters");
  var filterFields = document.getElementById("filter-fields");
  var search = document.getElementById("handoff-search");
  var searchClear = document.getElementById("search-clear");
  var previous = document.getElementById("page-previous");
  var next = document.getElementById("page-next");
  var pageInfo = document.getElementById("page-info");
  var offset = 0;
  var pageSize = 20;
  var searchedId = "";
  var latest = 0; // the newest queue request: an older answer arriving late must not overwrite it
  var claiming = {}; // hand-over ids with a claim on its way: a redrawn card must not offer 接起 again

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

  function when(iso) {
    return iso ? String(iso).slice(0, 19).replace("T", " ") : "";
  }

  function handoffCard(handoff) {
    var card = el("li", "card priority-" + handoff.priority + " status-" + handoff.status);
    card.dataset.handoffId = handoff.handoff_id;
    card.appendChild(el("h3", "", handoff.flow_name + " · " + handoff.priority_name));
    var facts = el("dl");
    field(facts, "状态", handoff.status_name);
    if (handoff.agent) field(facts, "接起坐席", handoff.agent);
    field(facts, "渠道", handoff.channel_name);
    field(facts, "客户", handoff.customer_id || "未识别");
    field(facts, "核身等级", handoff.verified_name);
    field(facts, "原因", handoff.reason);
    field(facts, "摘要", handoff.summary);
    field(facts, "转入时间", when(handoff.created_at));
    if (handoff.accepted_at) field(facts, "接起时间", when(handoff.accepted_at));
    field(facts, "编号", handoff.handoff_id);
    card.appendChild(facts);
    if (handoff.status === "waiting") {
      var button = el("button", "claim", "接起");
      button.type = "button";
      button.disabled = Boolean(claiming[handoff.handoff_id]);
      button.setAttribute("aria-label", "接起：" + handoff.flow_name + " " + handoff.handoff_id);
      button.addEventListener("click", function () { claim(handoff.handoff_id, button); });
      card.appendChild(button);
    }
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

  function failure(body, status) {
    return (body && body.detail && body.detail.message) || "请稍后重试（" + status + "）";
  }

  function claim(handoffId, button) {
    button.disabled = true;
    claiming[handoffId] = true;
    fetch("/desk/api/handoffs/" + encodeURIComponent(handoffId) + "/accept", {
      method: "POST", credentials: "same-origin"
    }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.json().then(function (body) {
        statusLine.textContent = response.ok
          ? "已接起：" + body.handoff.flow_name + "（" + handoffId + "），坐席：" + body.handoff.agent
          // 409: another agent was faster (or the caller hung up): the refreshed list shows it.
          : "接起失败：" + failure(body, response.status) + (response.status === 409 ? "列表已刷新。" : "");
      });
    }).catch(function () {
      statusLine.textContent = "网络错误，请重试";
    }).then(function () {
      delete claiming[handoffId];
      poll();
    });
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
          : "操作失败：" + failure(body, response.status);
        poll();
      });
    }).catch(function () { statusLine.textContent = "网络错误，请重试"; });
  }

  function query() {
    var params = new URLSearchParams();
    if (searchedId) {
      // Looking up one hand-over finds it in whatever state it is, whatever the filters say.
      params.set("handoff_id", searchedId);
      params.set("status", "all");
      return params.toString();
    }
    new FormData(filters).forEach(function (value, key) { if (value) params.set(key, value); });
    if (offset) params.set("offset", String(offset));
    return params.toString();
  }

  function showPage(queue) {
    pageSize = queue.page_size;
    var pages = Math.max(1, Math.ceil(queue.total / pageSize));
    pageInfo.textContent = "第 " + (Math.floor(queue.offset / pageSize) + 1) + " / " + pages + " 页，共 "
      + queue.total + " 条";
    previous.disabled = queue.offset === 0;
    next.disabled = queue.offset + pageSize >= queue.total;
  }

  function poll() {
    var number = ++latest;
    fetch("/desk/api/queue?" + query(), { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      if (response.status === 422 && searchedId) {
        statusLine.textContent = "编号格式不正确：应为 H- 加 20 位数字或字母 a–f";
        endSearch(); // the typed text stays, to be corrected
        return null;
      }
      return response.ok ? response.json() : null;
    }).then(function (queue) {
      if (!queue || number !== latest) return;
      if (queue.offset > 0 && queue.offset >= queue.total) {
        // The page emptied (taken by others, or filtered away): go to the last page that has some.
        offset = Math.max(0, Math.ceil(queue.total / queue.page_size) - 1) * queue.page_size;
        poll();
        return;
      }
      // Don't wipe a note an agent is typing: skip the refresh while a review card has focus.
      if (!reviewList.contains(document.activeElement)) {
        replaceAll(reviewList, queue.reviews, reviewCard, "暂无待审核操作");
      }
      replaceAll(handoffList, queue.handoffs, handoffCard, searchedId ? "没有这个编号的转人工" : "没有符合条件的转人工");
      showPage(queue);
      document.body.dataset.updated = String(Date.now());
    }).catch(function () { statusLine.textContent = "无法获取队列，正在重试…"; });
  }

  function endSearch() {
    searchedId = "";
    filterFields.disabled = false;
    searchClear.hidden = true;
    offset = 0;
    poll();
  }

  filters.addEventListener("submit", function (event) { event.preventDefault(); });
  filters.addEventListener("change", function () { offset = 0; poll(); });
  search.addEventListener("submit", function (event) {
    event.preventDefault();
    var wanted = search.elements.handoff_id.value.trim();
    if (!wanted) { endSearch(); return; }
    searchedId = wanted.charAt(0).toUpperCase() + wanted.slice(1).toLowerCase(); // ids are H-<hex>
    filterFields.disabled = true; // the filters wait, unchanged, until the look-up is cleared
    searchClear.hidden = false;
    offset = 0;
    poll();
  });
  searchClear.addEventListener("click", function () {
    search.elements.handoff_id.value = "";
    endSearch();
  });
  previous.addEventListener("click", function () { offset = Math.max(0, offset - pageSize); poll(); });
  next.addEventListener("click", function () { offset += pageSize; poll(); });

  poll();
  setInterval(poll, POLL_MS);
})();

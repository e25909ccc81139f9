/* Agent desk: the web server pushes what changed (Server-Sent Events from /desk/api/events: the
 * queue or reviews changed, the open conversation has new lines) and the page then asks for the
 * chosen filters' page, or the conversation's new lines only; a slow poll is the safety net.
 * Hand-overs and pending reviews are rendered with textContent only (summaries and chats carry
 * the customer's own words). The server sends every hand-over word in Chinese (web/labels.py);
 * ids of flows and levels never reach this script. The agent's presence is sent every 15 s as a
 * heartbeat, so an agent whose desk is closed stops being offered chats. */
(function () {
  "use strict";
  var SAFETY_POLL_MS = 60000; // only if a pushed event was lost
  var feed = null; // the event stream, for the open conversation (if any)
  var PRESENCE_MS = 15000;
  var me = document.body.dataset.agent;
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
  var searchedPhone = ""; // whole, masked (138****5678) or the last four digits
  var shownStamp = null; // the desk stamp of the last change the page was refreshed for
  var latest = 0; // the newest queue request: an older answer arriving late must not overwrite it
  var claiming = {}; // hand-over ids with a claim on its way: a redrawn card must not offer 接起 again
  var presenceSelect = document.getElementById("presence");
  var panel = document.getElementById("conversation");
  var panelFacts = document.getElementById("conversation-facts");
  var transcript = document.getElementById("transcript");
  var composer = document.getElementById("composer");
  var closer = document.getElementById("closer");
  var doNotCall = document.getElementById("do-not-call");
  var openId = null; // the hand-over whose conversation the panel shows
  var shownUpTo = 0; // the conversation's events already shown
  var reading = false;
  var readAgain = false; // news came while a read was under way
  var mineList = document.getElementById("mine");
  var mineSeen = null; // ids of the agent's open cases at the last poll (null: none polled yet)

  var el = window.DeskDom.el;
  var field = window.DeskDom.field;
  var showPager = window.DeskDom.showPager;

  function when(iso) {
    return iso ? String(iso).slice(0, 19).replace("T", " ") : "";
  }

  function handoffCard(handoff) {
    var card = el("li", "card priority-" + handoff.priority + " status-" + handoff.status);
    card.dataset.handoffId = handoff.handoff_id;
    card.appendChild(el("h3", "", handoff.flow_name + " · " + handoff.priority_name));
    var facts = el("dl");
    field(facts, "状态", handoff.status_name);
    if (handoff.agent) field(facts, "接起坐席", handoff.agent_name || handoff.agent);
    field(facts, "渠道", handoff.channel_name);
    field(facts, "客户", handoff.customer_id || "未识别");
    if (handoff.masked_phone) field(facts, "手机", handoff.masked_phone);
    field(facts, "核身等级", handoff.verified_name);
    field(facts, "原因", handoff.reason);
    field(facts, "摘要", handoff.summary);
    if (handoff.customer_note) field(facts, "客户留言", handoff.customer_note);
    if (handoff.disposition_name) field(facts, "结束方式", handoff.disposition_name);
    field(facts, "转入时间", when(handoff.created_at));
    if (handoff.accepted_at) field(facts, "接起时间", when(handoff.accepted_at));
    field(facts, "编号", handoff.handoff_id);
    card.appendChild(facts);
    if (handoff.status === "waiting" || handoff.status === "unknown") {
      var button = el("button", "claim", handoff.status === "waiting" ? "接起" : "认领（接过此来电）");
      button.type = "button";
      button.disabled = Boolean(claiming[handoff.handoff_id]);
      button.setAttribute("aria-label", "接起：" + handoff.flow_name + " " + handoff.handoff_id);
      button.addEventListener("click", function () { claim(handoff.handoff_id, button); });
      card.appendChild(button);
    }
    var view = el("button", "open", handoff.status === "accepted" && handoff.agent === me ? "进入会话" : "查看对话");
    view.type = "button";
    view.setAttribute("aria-label", view.textContent + "：" + handoff.flow_name + " " + handoff.handoff_id);
    view.addEventListener("click", function () { openConversation(handoff.handoff_id); });
    card.appendChild(view);
    return card;
  }

  function reviewCard(review) {
    var card = el("li", "card");
    card.dataset.reviewId = review.review_id;
    card.appendChild(el("h3", "", review.action_name));
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
      button.setAttribute("aria-label", choice[1] + "：" + review.action_name + " " + review.customer_id);
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
          ? "已接起：" + body.handoff.flow_name + "（" + handoffId + "）" + (body.joined ? "" : "，但未能通知客户")
          // 409: another agent was faster (or the caller hung up): the refreshed list shows it.
          : "接起失败：" + failure(body, response.status) + (response.status === 409 ? "列表已刷新。" : "");
        if (response.ok) openConversation(handoffId);
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
    if (searchedId || searchedPhone) {
      // A look-up finds hand-overs in whatever state they are, whatever the filters say.
      params.set(searchedId ? "handoff_id" : "phone", searchedId || searchedPhone);
      params.set("status", "all");
      if (offset) params.set("offset", String(offset));
      return params.toString();
    }
    if (filters) new FormData(filters).forEach(function (value, key) { if (value) params.set(key, value); });
    if (offset) params.set("offset", String(offset));
    return params.toString();
  }

  function showPage(queue) {
    pageSize = queue.page_size;
    showPager(pageInfo, previous, next, queue, "条");
  }

  function poll() {
    var number = ++latest;
    fetch("/desk/api/queue?" + query(), { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      if (response.status === 422 && (searchedId || searchedPhone)) {
        statusLine.textContent = "格式不正确：编号为 H- 加 20 位数字或字母 a–f；手机号为 11 位、138****5678 或尾号 4 位";
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
      show(queue);
    }).catch(function () { statusLine.textContent = "无法获取队列，正在重试…"; });
  }

  /* One page of hand-overs and the reviews on the page. */
  function show(queue) {
    // Don't wipe a note an agent is typing: skip the refresh while a review card has focus.
    if (reviewList && !reviewList.contains(document.activeElement)) {
      replaceAll(reviewList, queue.reviews, reviewCard, "暂无待审核操作");
    }
    if (handoffList) {
      replaceAll(handoffList, queue.handoffs, handoffCard, searchedId ? "没有这个编号的转人工"
        : searchedPhone ? "没有这个手机号的转人工" : "没有符合条件的转人工");
      showPage(queue);
      showMine(queue.mine);
    }
    document.body.dataset.updated = String(Date.now());
  }

  /* The agent's open cases. One that appears without this desk claiming it — a phone call the
   * agent's extension answered in the Asterisk queue — pops up: its summary opens at once. */
  function showMine(mine) {
    mineList.textContent = "";
    if (!mine.length) mineList.appendChild(el("li", "empty", "暂无"));
    mine.forEach(function (handoff) {
      var item = el("li");
      var open = el("button", "open", handoff.channel_name + " · " + handoff.flow_name + "（" + handoff.handoff_id + "）");
      open.type = "button";
      open.addEventListener("click", function () { openConversation(handoff.handoff_id); });
      item.appendChild(open);
      mineList.appendChild(item);
      if (mineSeen && !mineSeen[handoff.handoff_id] && handoff.handoff_id !== openId) {
        statusLine.textContent = (handoff.channel === "chat" ? "已接入：" : "来电已接通：") + handoff.flow_name
          + "（" + handoff.handoff_id + "）";
        openConversation(handoff.handoff_id);
      }
    });
    mineSeen = {};
    mine.forEach(function (handoff) { mineSeen[handoff.handoff_id] = true; });
  }

  function endSearch() {
    searchedId = "";
    searchedPhone = "";
    filterFields.disabled = false;
    searchClear.hidden = true;
    offset = 0;
    poll();
  }

  /* --- One conversation: the summary, what was said, and for the agent holding a chat, the
   * reply box and the closing form. --- */
  var FROM = { customer: "客户", bot: "智能客服", agent: "坐席" };

  function line(message) {
    var item = el("li", "said said-" + message.from + (message.state && message.state !== "message" ? " said-note" : ""));
    var who = message.from === "agent" ? FROM.agent + " " + (message.name || "") : FROM[message.from];
    item.appendChild(el("span", "who", who));
    item.appendChild(el("p", "", message.text));
    if (message.knowledge) {
      // The entry the assistant answered from: one click to propose a better answer.
      var entry = el("a", "knowledge", "知识库 " + message.knowledge);
      entry.href = "/desk/knowledge?entry=" + encodeURIComponent(message.knowledge);
      item.appendChild(entry);
    }
    if (message.at) item.appendChild(el("time", "", new Date(message.at * 1000).toLocaleTimeString("zh-CN")));
    return item;
  }

  function showFacts(handoff) {
    panelFacts.textContent = "";
    field(panelFacts, "业务", handoff.flow_name + " · " + handoff.priority_name);
    field(panelFacts, "状态", handoff.status_name);
    field(panelFacts, "渠道", handoff.channel_name);
    field(panelFacts, "核身等级", handoff.verified_name);
    field(panelFacts, "摘要", handoff.summary);
    if (handoff.customer_note) field(panelFacts, "客户留言", handoff.customer_note);
    var mine = handoff.status === "accepted" && handoff.agent === me;
    composer.hidden = !(mine && handoff.channel === "chat");
    closer.hidden = !mine;
    doNotCall.hidden = !handoff.customer_id; // only an identified customer can be put on the list
    panel.dataset.status = handoff.status;
  }

  function readConversation() {
    if (!openId) return;
    if (reading) { readAgain = true; return; } // news during a read: read once more after it
    reading = true;
    readAgain = false;
    var wanted = openId;
    fetch("/desk/api/handoffs/" + encodeURIComponent(wanted) + "/conversation?after=" + shownUpTo,
      { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.ok ? response.json() : null;
    }).then(function (found) {
      if (!found || wanted !== openId) return;
      showFacts(found.handoff);
      if (found.missing && !transcript.childElementCount) transcript.appendChild(el("li", "empty", "没有这段对话的记录"));
      found.messages.forEach(function (message) { transcript.appendChild(line(message)); });
      if (found.messages.length) transcript.scrollTop = transcript.scrollHeight;
      shownUpTo = found.next;
    }).catch(function () { panel.dataset.trouble = "true"; }) // the next read retries
      .then(function () { reading = false; if (readAgain) readConversation(); });
  }

  function openConversation(handoffId) {
    if (!panel) return;
    if (openId !== handoffId) {
      openId = handoffId;
      shownUpTo = 0;
      transcript.textContent = "";
      panelFacts.textContent = "";
      composer.hidden = true;
      closer.hidden = true;
    }
    panel.hidden = false;
    listen();
    document.getElementById("conversation-title").textContent = "会话 " + handoffId;
    readConversation();
    if (!composer.hidden) composer.elements.text.focus();
  }

  function post(path, body) {
    return fetch(path, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.json().then(function (answer) { return { ok: response.ok, status: response.status, body: answer }; });
    });
  }

  function sendReply() {
    var box = composer.elements.text;
    var text = box.value.trim();
    if (!text || !openId) return;
    box.disabled = true;
    post("/desk/api/handoffs/" + encodeURIComponent(openId) + "/messages", { text: text }).then(function (result) {
      if (!result) return;
      if (result.ok) { box.value = ""; readConversation(); }
      else statusLine.textContent = "发送失败：" + failure(result.body, result.status);
    }).catch(function () { statusLine.textContent = "网络错误，消息未发送"; })
      .then(function () { box.disabled = false; box.focus(); });
  }

  if (panel) {
    composer.addEventListener("submit", function (event) { event.preventDefault(); sendReply(); });
    composer.elements.text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); sendReply(); }
    });
    composer.querySelectorAll(".quick").forEach(function (button) {
      button.addEventListener("click", function () {
        composer.elements.text.value = button.textContent;
        composer.elements.text.focus();
      });
    });
    closer.addEventListener("submit", function (event) {
      event.preventDefault();
      var closing = openId;
      post("/desk/api/handoffs/" + encodeURIComponent(closing) + "/close", {
        disposition: closer.elements.disposition.value, note: closer.elements.note.value
      }).then(function (result) {
        if (!result) return;
        statusLine.textContent = result.ok ? "已结束服务：" + closing + "（" + result.body.handoff.disposition_name + "）"
          : "结束失败：" + failure(result.body, result.status);
        if (result.ok) { closer.elements.note.value = ""; readConversation(); poll(); }
      }).catch(function () { statusLine.textContent = "网络错误，请重试"; });
    });
    doNotCall.addEventListener("click", function () {
      var asked = openId;
      if (!window.confirm("确认客户要求不再接到外呼电话？确认后所有外呼活动都不会再拨打这位客户。")) return;
      post("/desk/api/handoffs/" + encodeURIComponent(asked) + "/do-not-call", {}).then(function (result) {
        if (!result) return;
        statusLine.textContent = result.ok ? "已加入免打扰名单（" + asked + "）"
          : "操作失败：" + failure(result.body, result.status);
      }).catch(function () { statusLine.textContent = "网络错误，请重试"; });
    });
    document.getElementById("conversation-hide").addEventListener("click", function () {
      openId = null;
      panel.hidden = true;
      listen();
    });
    setInterval(readConversation, SAFETY_POLL_MS);
  }

  /* --- Presence: only an online agent is offered chats. --- */
  function sendPresence() {
    post("/desk/api/presence", { state: presenceSelect.value }).catch(function () { /* the next beat retries */ });
  }
  if (presenceSelect) {
    presenceSelect.addEventListener("change", sendPresence);
    sendPresence();
    setInterval(sendPresence, PRESENCE_MS);
  }

  if (filters) {
    filters.addEventListener("submit", function (event) { event.preventDefault(); });
    filters.addEventListener("change", function () { offset = 0; poll(); });
    search.addEventListener("submit", function (event) {
      event.preventDefault();
      var wanted = search.elements.handoff_id.value.trim();
      if (!wanted) { endSearch(); return; }
      if (/^h-/i.test(wanted)) {
        searchedId = wanted.charAt(0).toUpperCase() + wanted.slice(1).toLowerCase(); // ids are H-<hex>
        searchedPhone = "";
      } else {
        searchedPhone = wanted.replace(/[\s-]/g, "").replace(/＊/g, "*"); // as read out: 138 1234 5678
        searchedId = "";
      }
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
  }

  /* --- Supervisors: the quality inspection's live alerts (pushed on the same stream), and one
   * alert's conversation with each hit marked on the last line said before it. --- */
  var MAX_ALERTS = 200;
  var alertList = document.getElementById("alerts");
  var inspected = document.getElementById("inspected");
  var shownAlerts = {}; // a stream opened again sends the recent alerts again: each is shown once

  function alertCard(alert) {
    var card = el("li", "card severity-" + alert.severity);
    card.appendChild(el("h3", "", alert.rule_name + " · " + alert.severity_name));
    var facts = el("dl");
    field(facts, "时间", new Date(alert.at * 1000).toLocaleTimeString("zh-CN"));
    field(facts, "会话", alert.conversation);
    field(facts, "详情", alert.detail);
    card.appendChild(facts);
    var open = el("button", "open", "查看会话");
    open.type = "button";
    open.addEventListener("click", function () { inspect(alert.conversation); });
    card.appendChild(open);
    // A chat is taken over; a call waits in Asterisk's queue and is moved to its front instead.
    var isCall = alert.kind === "call";
    var act = el("button", "claim", isCall ? "提高优先级" : "接管");
    act.type = "button";
    act.addEventListener("click", function () {
      if (isCall) raisePriority(alert.conversation, act); else takeOverConversation(alert.conversation, act);
    });
    card.appendChild(act);
    return card;
  }

  /* A call with an alert, waiting for an agent: its hand-over goes to emergency and the call to the
   * front of the agents' queue; any agent still takes it. */
  function raisePriority(ref, button) {
    button.disabled = true;
    fetch("/desk/api/quality/conversations/" + encodeURIComponent(ref) + "/priority", {
      method: "POST", credentials: "same-origin"
    }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.json().then(function (body) {
        if (!response.ok) {
          statusLine.textContent = "提高优先级失败：" + failure(body, response.status);
          button.disabled = false;
          return;
        }
        statusLine.textContent = "已提高优先级：" + body.handoff.priority_name + "（" + body.handoff.handoff_id + "）";
        button.textContent = "已提高优先级";
        poll();
      });
    }).catch(function () { statusLine.textContent = "网络错误，请重试"; button.disabled = false; });
  }

  /* A chat with an alert: its hand-over becomes this supervisor's, the customer is told a person
   * joined, and the conversation opens in the panel to write in. */
  function takeOverConversation(ref, button) {
    button.disabled = true;
    fetch("/desk/api/quality/conversations/" + encodeURIComponent(ref) + "/takeover", {
      method: "POST", credentials: "same-origin"
    }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.json().then(function (body) {
        if (!response.ok) {
          statusLine.textContent = "接管失败：" + failure(body, response.status);
          button.disabled = false;
          return;
        }
        statusLine.textContent = "已接管：" + body.handoff.flow_name + "（" + body.handoff.handoff_id + "）";
        openConversation(body.handoff.handoff_id);
        poll();
      });
    }).catch(function () { statusLine.textContent = "网络错误，请重试"; button.disabled = false; });
  }

  function showAlerts(event) {
    var empty = alertList.querySelector(".empty");
    JSON.parse(event.data).forEach(function (alert) {
      var key = alert.seq + "/" + alert.conversation + "/" + alert.at;
      if (shownAlerts[key]) return;
      shownAlerts[key] = true;
      if (empty) { alertList.removeChild(empty); empty = null; }
      alertList.insertBefore(alertCard(alert), alertList.firstChild); // newest first
    });
    while (alertList.children.length > MAX_ALERTS) alertList.removeChild(alertList.lastChild);
    document.body.dataset.alerts = String(alertList.querySelectorAll(".card").length);
    loadPending(); // an alert is a hit: its conversation now awaits review
  }

  function inspect(ref) {
    openInspected("/desk/api/quality/conversations/" + encodeURIComponent(ref), "告警会话 " + ref);
  }

  /* Supervisors: the conversations whose hits await a review or an appeal's decision, the worst
   * first (those the assistant handled alone too: no hand-over opens them). Fetched when the board
   * opens, on 刷新, as alerts come and after each step taken. */
  var pendingList = document.getElementById("pending");

  function pendingCard(item) {
    var card = el("li", "card severity-" + item.severity);
    card.appendChild(el("h3", "", item.channel_name + " · " + item.severity_name));
    var facts = el("dl");
    field(facts, "最近", new Date(item.at * 1000).toLocaleString("zh-CN"));
    field(facts, "待复核", String(item.to_review));
    field(facts, "待裁定申诉", String(item.appealed));
    field(facts, "规则", item.rule_names.join("、"));
    card.appendChild(facts);
    var open = el("button", "open", "复核");
    open.type = "button";
    open.setAttribute("aria-label", "复核会话 " + item.conversation);
    open.addEventListener("click", function () {
      openInspected("/desk/api/quality/conversations/" + encodeURIComponent(item.conversation),
        "待复核会话 " + item.conversation);
    });
    card.appendChild(open);
    return card;
  }

  var pendingOffset = 0;
  var pendingPageSize = 20;
  var pendingPrevious = document.getElementById("pending-previous");
  var pendingNext = document.getElementById("pending-next");
  var pendingInfo = document.getElementById("pending-info");

  function loadPending() {
    if (!pendingList) return;
    fetch("/desk/api/quality/pending?offset=" + pendingOffset, { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return; }
      return response.json().then(function (body) {
        pendingList.textContent = "";
        if (!response.ok) { // the inspection is down or not configured: say so, show nothing stale
          pendingList.appendChild(el("li", "empty", "无法读取待复核的会话：" + failure(body, response.status)));
          return;
        }
        pendingPageSize = body.page_size;
        if (body.offset > 0 && body.offset >= body.total) { // reviewed away: back to the last page with some
          pendingOffset = Math.max(0, Math.ceil(body.total / pendingPageSize) - 1) * pendingPageSize;
          loadPending();
          return;
        }
        body.conversations.forEach(function (item) { pendingList.appendChild(pendingCard(item)); });
        if (!body.conversations.length) pendingList.appendChild(el("li", "empty", "暂无待复核的会话"));
        showPager(pendingInfo, pendingPrevious, pendingNext, body, "个，最严重的在前");
        document.body.dataset.pending = String(body.total);
      });
    }).catch(function () { statusLine.textContent = "网络错误，待复核列表未更新"; });
  }

  if (pendingList) {
    document.getElementById("pending-refresh").addEventListener("click", loadPending);
    pendingPrevious.addEventListener("click", function () {
      pendingOffset = Math.max(0, pendingOffset - pendingPageSize);
      loadPending();
    });
    pendingNext.addEventListener("click", function () { pendingOffset += pendingPageSize; loadPending(); });
    loadPending();
  }

  /* The transcript with the hits marked, each hit with its review: its state, every step taken
   * (who, when, why) and the steps this person may take, each with a reason (复核 by supervisors;
   * 申诉 by the agent whose conversation it was; 裁定 by a supervisor other than the appellant). */
  var STEP_CHOICES = {
    review: [["review", "verdict", "confirmed", "确认违规"], ["review", "verdict", "dismissed", "撤销（误报）"]],
    appeal: [["appeal", null, null, "申诉"]],
    decide: [["appeal/decision", "outcome", "upheld", "申诉成立"], ["appeal/decision", "outcome", "rejected", "驳回申诉"]]
  };

  /* The view: the quality board's on a supervisor's desk; on an agent's, the same under the
   * conversation panel (an agent has no board). */
  function inspectedView() {
    var view = document.getElementById("inspected");
    if (view || !panel) return view;
    view = el("section");
    view.id = "inspected";
    view.setAttribute("aria-labelledby", "inspected-title");
    view.appendChild(el("h3", "", "质检结果")).id = "inspected-title";
    view.appendChild(el("ul", "hits")).id = "inspected-hits";
    var lines = view.appendChild(el("ol", "transcript"));
    lines.id = "inspected-transcript";
    lines.setAttribute("aria-label", "质检会话的对话记录");
    var hide = view.appendChild(el("button", "", "收起"));
    hide.type = "button";
    hide.addEventListener("click", function () { view.hidden = true; });
    panel.appendChild(view);
    return view;
  }

  function stepTime(at) {
    return new Date(at * 1000).toLocaleString("zh-CN");
  }

  function hitItem(hit, ref, title) {
    var item = el("li", "hit state-" + hit.state);
    item.appendChild(el("span", "", hit.rule_name + "（" + hit.severity_name + "）" + (hit.detail ? "：" + hit.detail : "")));
    item.appendChild(el("span", "hit-state", hit.state_name));
    if (hit.steps.length) {
      var steps = item.appendChild(el("ol", "hit-steps"));
      hit.steps.forEach(function (step) {
        steps.appendChild(el("li", "", step.step_name + " · " + step.outcome_name + " · " + step.by_name + " · "
          + stepTime(step.at) + "：" + step.reason));
      });
    }
    if (!hit.may.length) return item;
    var actions = item.appendChild(el("div", "hit-actions"));
    var reason = actions.appendChild(el("input", "note"));
    reason.maxLength = 500;
    reason.placeholder = "理由（必填，500 字以内）";
    reason.setAttribute("aria-label", "理由：" + hit.rule_name);
    hit.may.forEach(function (may) {
      STEP_CHOICES[may].forEach(function (choice) {
        var button = actions.appendChild(el("button", "", choice[3]));
        button.type = "button";
        button.setAttribute("aria-label", choice[3] + "：" + hit.rule_name);
        button.addEventListener("click", function () {
          var body = { hit: hit.hit, reason: reason.value.trim() };
          if (choice[1]) body[choice[1]] = choice[2];
          takeStep(ref, choice[0], body, actions, title);
        });
      });
    });
    return item;
  }

  function takeStep(ref, path, body, actions, title) {
    if (!body.reason) { statusLine.textContent = "请先填写理由"; return; }
    actions.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    post("/desk/api/quality/conversations/" + encodeURIComponent(ref) + "/" + path, body).then(function (result) {
      if (!result) return;
      statusLine.textContent = result.ok ? "已保存，会话质检得分 " + result.body.score
        : "操作失败：" + failure(result.body, result.status);
      openInspected("/desk/api/quality/conversations/" + encodeURIComponent(ref), title);
      loadPending();
    }).catch(function () {
      statusLine.textContent = "网络错误，请重试";
      actions.querySelectorAll("button").forEach(function (button) { button.disabled = false; });
    });
  }

  function openInspected(url, title) {
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return null; }
      return response.json().then(function (body) {
        if (response.ok) return body;
        statusLine.textContent = "无法打开这段会话：" + failure(body, response.status);
        return null;
      });
    }).then(function (found) {
      if (!found) return;
      var view = inspectedView();
      var hits = document.getElementById("inspected-hits");
      var lines = document.getElementById("inspected-transcript");
      hits.textContent = "";
      lines.textContent = "";
      found.hits.forEach(function (hit) { hits.appendChild(hitItem(hit, found.ref, title)); });
      if (!found.hits.length) hits.appendChild(el("li", "empty", "没有质检结果"));
      var items = found.messages.map(function (message) { return lines.appendChild(line(message)); });
      if (found.missing) lines.appendChild(el("li", "empty", "没有这段对话的记录"));
      found.hits.forEach(function (hit) {
        var last = -1;
        found.messages.forEach(function (message, index) { if (message.at <= hit.at) last = index; });
        if (last < 0) return;
        items[last].classList.add("said-hit");
        items[last].appendChild(el("span", "hit-mark", "⚠ " + hit.rule_name));
      });
      document.getElementById("inspected-title").textContent = title
        + (found.score === null || found.score === undefined ? "" : " · 质检得分 " + found.score);
      view.hidden = false;
    }).catch(function () { statusLine.textContent = "网络错误，请重试"; });
  }

  if (inspected) {
    document.getElementById("inspected-hide").addEventListener("click", function () { inspected.hidden = true; });
  }

  /* Any conversation a hand-over opens: its quality results, to review or appeal. */
  if (panel) {
    var qualityButton = el("button", "", "质检复核");
    qualityButton.type = "button";
    qualityButton.id = "conversation-quality";
    qualityButton.addEventListener("click", function () {
      if (openId) openInspected("/desk/api/handoffs/" + encodeURIComponent(openId) + "/quality", "会话 " + openId + " 的质检结果");
    });
    panel.insertBefore(qualityButton, document.getElementById("conversation-hide"));
  }

  /* --- Pushed updates: one stream, opened again for each conversation the panel shows. --- */
  var listening = null; // the conversation the stream is for ("" for none)
  function listen() {
    var wanted = openId || "";
    if (!window.EventSource || (feed && listening === wanted)) return;
    if (feed) feed.close();
    listening = wanted;
    feed = new EventSource("/desk/api/events" + (wanted ? "?conversation=" + encodeURIComponent(wanted) : ""));
    feed.addEventListener("open", function () { document.body.dataset.push = "live"; });
    var opened = feed;
    feed.addEventListener("error", function () {
      document.body.dataset.push = "retrying";
      if (opened.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      // Refused (logged out: the poll goes to the login page) or cut for good: start again later.
      poll();
      setTimeout(function () { if (feed === opened) { feed = null; listen(); } }, 5000);
    });
    feed.addEventListener("queue", function (event) {
      var stamp = JSON.parse(event.data).stamp;
      if (stamp === shownStamp) return; // what the page shows already (e.g. the page it came with)
      shownStamp = stamp;
      poll();
    });
    feed.addEventListener("conversation", readConversation);
    if (alertList) feed.addEventListener("alerts", showAlerts);
    feed.addEventListener("ended", function () { feed.close(); location.href = "/desk"; });
  }

  // The first page comes with the page itself (no round trip before the agent sees the queue);
  // without it (the risk API did not answer the server) the page asks.
  var firstPage = document.getElementById("first-page");
  if (firstPage) {
    var first = JSON.parse(firstPage.textContent);
    shownStamp = first.stamp;
    show(first);
  } else {
    poll();
  }
  listen();
  setInterval(poll, SAFETY_POLL_MS);
})();

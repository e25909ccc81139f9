/* The knowledge base's edits on the desk: load an entry (or name a new one), propose a change with
 * a reason, and for reviewers approve or reject others' proposals with the change shown field by
 * field. Every text goes in with textContent (desk-dom.js). */
(function () {
  "use strict";
  var el = window.DeskDom.el;
  var field = window.DeskDom.field;
  var statusLine = document.getElementById("knowledge-status");
  var form = document.getElementById("knowledge-form");
  var problems = document.getElementById("knowledge-problems");
  var list = document.getElementById("proposals");
  var statusFilter = document.getElementById("proposals-status");
  var previous = document.getElementById("proposals-previous");
  var next = document.getElementById("proposals-next");
  var info = document.getElementById("proposals-info");
  var offset = 0;
  var pageSize = 20;
  var base = null; // the digest of the entry as loaded; null: a new entry
  var FIELDS = [["question", "标准问题"], ["paraphrases", "其他问法"], ["chat", "文字答复"], ["voice", "语音答复"]];

  function input(name) { return document.getElementById("knowledge-" + name); }

  function message(body, fallback) {
    return (body && body.detail && (body.detail.message || (typeof body.detail === "string" && body.detail))) || fallback;
  }

  function call(method, url, payload) {
    var options = { method: method, credentials: "same-origin" };
    if (payload !== undefined) {
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(payload);
    }
    return fetch(url, options).then(function (response) {
      if (response.status === 401) { location.href = "/desk"; return new Promise(function () {}); }
      return response.json().catch(function () { return {}; }).then(function (body) {
        return { ok: response.ok, status: response.status, body: body };
      });
    });
  }

  function showProblems(lines) {
    problems.textContent = "";
    (lines || []).forEach(function (text) { problems.appendChild(el("li", "", text)); });
  }

  function fill(entry) {
    input("question").value = entry ? entry.question : "";
    input("paraphrases").value = entry ? entry.paraphrases.join("\n") : "";
    input("chat").value = entry && entry.chat ? entry.chat : "";
    input("voice").value = entry && entry.voice ? entry.voice : "";
    input("retire").checked = false;
    // An entry that points to a flow has no answer of its own.
    input("chat").disabled = input("voice").disabled = Boolean(entry && entry.flow);
  }

  function load() {
    var entryId = input("entry-id").value.trim();
    if (!entryId) return;
    call("GET", "/desk/api/knowledge/entries/" + encodeURIComponent(entryId)).then(function (answer) {
      var state = input("entry-state");
      showProblems([]);
      if (answer.ok) {
        base = answer.body.digest;
        fill(answer.body);
        state.textContent = "已载入 " + answer.body.entry_id + "（" + answer.body.status_name + "）" +
          (answer.body.flow ? "：这个条目引导到业务流程，只能改问法" : "");
      } else if (answer.status === 404) {
        base = null;
        fill(null);
        state.textContent = "新条目：提交后由审核员批准才会生效";
      } else {
        state.textContent = message(answer.body, "无法载入条目");
      }
    });
  }

  function submit(event) {
    event.preventDefault();
    var optional = function (name) { var value = input(name).value.trim(); return input(name).disabled || !value ? null : value; };
    var payload = {
      entry_id: input("entry-id").value.trim(), base_digest: base,
      question: input("question").value.trim(),
      paraphrases: input("paraphrases").value.split("\n").map(function (line) { return line.trim(); })
        .filter(function (line) { return line; }),
      chat: optional("chat"), voice: optional("voice"), retire: input("retire").checked,
      reason: input("reason").value.trim()
    };
    call("POST", "/desk/api/knowledge/proposals", payload).then(function (answer) {
      if (answer.ok) {
        statusLine.textContent = "已提交审核：" + answer.body.entry_id;
        showProblems([]);
        form.reset();
        base = null;
        input("entry-state").textContent = "";
        refresh();
        return;
      }
      statusLine.textContent = "未提交：" + message(answer.body, "请检查填写的内容");
      var detail = answer.body && answer.body.detail;
      showProblems(detail && detail.problems ? detail.problems
        : Array.isArray(detail) ? detail.map(function (item) { return (item.loc || []).slice(1).join(".") + "：" + item.msg; }) : []);
    });
  }

  function shown(value) {
    if (value === null || value === undefined) return "—";
    return Array.isArray(value) ? value.join(" / ") : String(value);
  }

  function card(proposal) {
    var item = el("li", "card proposal-" + proposal.status);
    item.dataset.proposalId = proposal.proposal_id;
    var edit = proposal.edit;
    var what = !proposal.before ? "新增" : edit.retire ? "停用" : "修改";
    item.appendChild(el("h3", "", what + " " + proposal.entry_id + " · " + proposal.status_name));
    var facts = el("dl");
    field(facts, "提议人", proposal.proposed_by + " · " + new Date(proposal.proposed_at * 1000).toLocaleString("zh-CN"));
    field(facts, "原因", proposal.reason);
    FIELDS.forEach(function (pair) {
      var now = proposal.before ? proposal.before[pair[0]] : null;
      var proposed = edit[pair[0]];
      if (shown(now) === shown(proposed)) return;
      field(facts, pair[1] + "（原）", shown(now));
      field(facts, pair[1] + "（新）", shown(proposed));
    });
    if (proposal.decided_by) field(facts, "审核", proposal.decided_by + (proposal.note ? "：" + proposal.note : ""));
    item.appendChild(facts);
    if (proposal.stale) item.appendChild(el("p", "warning", "条目在提议之后已被修改：不能发布，请驳回后重新提议。"));
    if (proposal.may_decide) {
      var note = el("input");
      note.placeholder = "审核意见（可选）";
      note.maxLength = 500;
      note.setAttribute("aria-label", "审核意见：" + proposal.entry_id);
      item.appendChild(note);
      [[true, "批准并发布"], [false, "驳回"]].forEach(function (choice) {
        var button = el("button", "decide", choice[1]);
        button.type = "button";
        button.setAttribute("aria-label", choice[1] + "：" + proposal.entry_id);
        button.addEventListener("click", function () { decide(proposal, choice, note.value, item); });
        item.appendChild(button);
      });
    }
    return item;
  }

  function decide(proposal, choice, note, item) {
    Array.prototype.forEach.call(item.querySelectorAll("button"), function (button) { button.disabled = true; });
    statusLine.textContent = choice[0] ? "正在发布 " + proposal.entry_id + "…" : "";
    call("POST", "/desk/api/knowledge/proposals/" + encodeURIComponent(proposal.proposal_id) + "/decision",
      { approve: choice[0], note: note.trim() }).then(function (answer) {
      if (!answer.ok) {
        statusLine.textContent = choice[1] + "失败：" + message(answer.body, String(answer.status));
        showProblems(answer.body && answer.body.detail && answer.body.detail.problems);
      } else {
        statusLine.textContent = answer.body.message || (proposal.entry_id + "：" + answer.body.status_name +
          (answer.body.indexed ? "，智能客服一分钟内用上新答案" : ""));
      }
      refresh();
    });
  }

  function refresh() {
    call("GET", "/desk/api/knowledge/proposals?status=" + encodeURIComponent(statusFilter.value) + "&offset=" + offset)
      .then(function (answer) {
        if (!answer.ok) { statusLine.textContent = message(answer.body, "无法获取提议"); return; }
        var page = answer.body;
        // The page emptied (decided meanwhile): go back to one that has some.
        if (!page.proposals.length && offset > 0) { offset = Math.max(0, offset - page.page_size); refresh(); return; }
        list.textContent = "";
        if (!page.proposals.length) list.appendChild(el("li", "empty", "没有提议"));
        page.proposals.forEach(function (proposal) { list.appendChild(card(proposal)); });
        pageSize = page.page_size;
        window.DeskDom.showPager(info, previous, next, page, "个");
        document.body.dataset.updated = String(Date.now());
      });
  }

  if (form) {
    document.getElementById("knowledge-load").addEventListener("click", load);
    form.addEventListener("submit", submit);
    var wanted = new URLSearchParams(location.search).get("entry");
    if (wanted) { input("entry-id").value = wanted; load(); }
  }
  statusFilter.addEventListener("change", function () { offset = 0; refresh(); });
  previous.addEventListener("click", function () { offset = Math.max(0, offset - pageSize); refresh(); });
  next.addEventListener("click", function () { offset += pageSize; refresh(); });
  refresh();
})();

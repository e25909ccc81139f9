/* Web chat widget for the assistant. Embed with one tag:
 *   <script src="https://HOST/widget.js" data-server="https://RASA-HOST" defer></script>
 * Before connecting it asks the server that served this script (HOST/chat/session) for a chat
 * session token and proves it to Rasa's socketio channel (session_request {token}): the
 * conversation is the one inside the token, never an id the page picks. Speaks Socket.IO (v5
 * protocol over Engine.IO v4, websocket transport) directly: no client library, no build step.
 * Every message is put in the page with textContent, never as HTML.
 * The token, its expiry and the transcript live in this tab's sessionStorage only, so a reload or
 * a reconnect keeps the conversation; what the customer types in answer to an identity question
 * is shown but stored as "••••". When the session ends (its expiry passed, or Rasa answers
 * session_invalid) everything stored is cleared and a new session starts with a fresh transcript.
 * Handed over to a person, the widget asks the web server (chat/handoff, the token as credential)
 * every few seconds for its place in the queue or the agent's name; the agent's words arrive on
 * the same socket as `live_agent` messages and are shown under the agent's name; lines sent
 * while the socket was down come with the next check, each shown once (numbered by the server).
 * Checking is also how the queue knows the customer is still there. */
(function () {
  "use strict";
  var script = document.currentScript;
  var server = (script && script.dataset.server) || location.origin;
  var title = (script && script.dataset.title) || "在线客服";
  var startOpen = script && script.dataset.open === "true";
  var base = script ? script.src.replace(/widget\.js(\?.*)?$/, "") : "/";
  var STORE = "fin-chat:";
  var MAX_KEPT = 200;
  var MAX_RETRY_MS = 5000;
  var HANDOFF_TEXT = "正在为您转接人工客服…";
  var HANDOFF_POLL_MS = 5000;
  var NOTE_SENT_TEXT = "留言已提交，客服会尽快处理，您可以关闭窗口。";
  var RENEWED_TEXT = "上一次会话已结束，已为您开始新的会话。";
  var MASK = "••••";
  // Answers to questions the bot marks private (they prove who the customer is), and any
  // number, are never kept in the browser.
  var IDENTITY_TYPES = ["digits", "phone"];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function load(key, fallback) {
    try { var value = sessionStorage.getItem(STORE + key); return value ? JSON.parse(value) : fallback; }
    catch (e) { return fallback; }
  }
  function save(key, value) {
    try { sessionStorage.setItem(STORE + key, JSON.stringify(value)); } catch (e) { /* storage disabled */ }
  }
  function forgetAll(storageName) {
    try {
      var storage = window[storageName]; // reading it throws where storage is disabled
      var keys = [];
      for (var i = 0; i < storage.length; i++) {
        if (storage.key(i).indexOf(STORE) === 0) keys.push(storage.key(i));
      }
      keys.forEach(function (key) { storage.removeItem(key); });
    } catch (e) { /* storage disabled */ }
  }
  // Earlier versions kept the whole conversation, identity answers included, in localStorage.
  forgetAll("localStorage");

  var chat = load("session", null); // {token, expiresAt: ms by this browser's clock}
  if (!chat || !(chat.expiresAt > Date.now())) {
    forgetAll("sessionStorage");
    chat = null;
  }
  var transcript = load("transcript", []);
  var handedOver = load("handoff", false);
  var agentSeq = load("agentSeq", -1); // the last agent line shown (its event number in the conversation)
  var expecting = load("expect", null); // the bot's open question {slot, type}

  var style = el("link");
  style.rel = "stylesheet";
  style.href = base + "widget.css";
  document.head.appendChild(style);

  var root = el("div", "fin-chat");
  var launcher = el("button", "fin-chat-launcher", title);
  launcher.type = "button";
  launcher.setAttribute("aria-controls", "fin-chat-panel");
  var panel = el("section", "fin-chat-panel");
  panel.id = "fin-chat-panel";
  panel.setAttribute("aria-label", title);
  var header = el("header", "fin-chat-header");
  header.appendChild(el("h2", "fin-chat-title", title));
  var status = el("span", "fin-chat-status", "连接中…");
  status.setAttribute("role", "status");
  header.appendChild(status);
  var closer = el("button", "fin-chat-close", "×");
  closer.type = "button";
  closer.setAttribute("aria-label", "收起对话窗口");
  header.appendChild(closer);
  var log = el("ol", "fin-chat-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  log.setAttribute("aria-label", "对话记录");
  var banner = el("p", "fin-chat-handoff", HANDOFF_TEXT);
  banner.setAttribute("role", "status");
  banner.hidden = !handedOver;
  var typing = el("p", "fin-chat-typing", "客服正在输入…");
  typing.setAttribute("aria-live", "polite");
  typing.hidden = true;
  var alternatives = el("div", "fin-chat-alternatives");
  alternatives.setAttribute("role", "group");
  alternatives.setAttribute("aria-label", "不想等待");
  alternatives.hidden = true;
  var callbackChoice = el("button", "fin-chat-reply", "预约回电");
  callbackChoice.type = "button";
  var noteChoice = el("button", "fin-chat-reply", "留言");
  noteChoice.type = "button";
  alternatives.appendChild(el("span", "fin-chat-alt-text", "不想等待？"));
  alternatives.appendChild(callbackChoice);
  alternatives.appendChild(noteChoice);
  var noting = false; // the next message typed is a note for the agent, not a chat message
  var replies = el("div", "fin-chat-replies");
  replies.setAttribute("role", "group");
  replies.setAttribute("aria-label", "快捷回复");
  var form = el("form", "fin-chat-form");
  var input = el("input", "fin-chat-input");
  input.type = "text";
  input.maxLength = 500;
  input.autocomplete = "off";
  input.placeholder = "请输入您的问题";
  input.setAttribute("aria-label", "输入消息");
  input.disabled = true;
  var send = el("button", "fin-chat-send", "发送");
  send.type = "submit";
  send.setAttribute("aria-label", "发送消息");
  send.disabled = true;
  form.appendChild(input);
  form.appendChild(send);
  [header, log, banner, alternatives, typing, replies, form].forEach(function (node) { panel.appendChild(node); });
  root.appendChild(launcher);
  root.appendChild(panel);

  function setOpen(open) {
    panel.hidden = !open;
    launcher.setAttribute("aria-expanded", String(open));
    if (open) input.focus();
    else launcher.focus();
  }
  launcher.addEventListener("click", function () { setOpen(panel.hidden); });
  closer.addEventListener("click", function () { setOpen(false); });
  panel.addEventListener("keydown", function (event) { if (event.key === "Escape") setOpen(false); });

  function clock(at) {
    var when = new Date(at);
    return String(when.getHours()).padStart(2, "0") + ":" + String(when.getMinutes()).padStart(2, "0");
  }

  function render(entry) {
    var item = el("li", "fin-chat-msg fin-chat-" + entry.from);
    var who = { user: "我", bot: "智能客服", agent: "人工客服 " + (entry.name || "") }[entry.from] || "系统";
    item.appendChild(el("span", "fin-chat-who", who));
    item.appendChild(el("p", "fin-chat-text", entry.text));
    var time = el("time", "fin-chat-time", clock(entry.at));
    time.dateTime = new Date(entry.at).toISOString();
    item.appendChild(time);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  // `kept` is what the stored transcript gets; the page shows `text`. `name`: the agent's.
  function remember(from, text, kept, name) {
    var at = Date.now();
    transcript.push({ from: from, text: kept === undefined ? String(text) : kept, at: at, name: name });
    if (transcript.length > MAX_KEPT) transcript = transcript.slice(-MAX_KEPT);
    save("transcript", transcript);
    render({ from: from, text: String(text), at: at, name: name });
  }

  function setExpect(expect) {
    expecting = expect;
    save("expect", expect);
    if (expect) root.dataset.expect = expect.slot;
    else delete root.dataset.expect;
    input.inputMode = expect && IDENTITY_TYPES.indexOf(expect.type) >= 0 ? "numeric" : "text";
  }

  function askedForIdentity() {
    return !!expecting && (expecting.private === true || IDENTITY_TYPES.indexOf(expecting.type) >= 0);
  }

  function showReplies(buttons) {
    replies.textContent = "";
    buttons.forEach(function (button) {
      var choice = el("button", "fin-chat-reply", button.title);
      choice.type = "button";
      choice.addEventListener("click", function () { say(button.title, button.payload); });
      replies.appendChild(choice);
    });
  }

  /* --- The chat session: a token from the web server, ended for good at its expiry. --- */
  var expiryTimer = null;

  function adopt(session) {
    chat = session;
    save("session", session);
    clearTimeout(expiryTimer);
    expiryTimer = setTimeout(endSession, Math.max(0, session.expiresAt - Date.now()));
  }

  function endSession() {
    clearTimeout(expiryTimer);
    forgetAll("sessionStorage");
    chat = null;
    transcript = [];
    agentSeq = -1;
    leaveQueue();
    typing.hidden = true;
    log.textContent = "";
    replies.textContent = "";
    setExpect(null);
    remember("system", RENEWED_TEXT);
    // The socket still speaks for the old session: reconnecting fetches a new one.
    if (socket) socket.close();
  }

  function withSession(then) {
    if (chat && chat.expiresAt > Date.now()) { then(); return; }
    fetch(base + "chat/session", { method: "POST", credentials: "omit", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("chat session refused: " + response.status);
        return response.json();
      })
      .then(function (issued) {
        // Timed by this browser's clock from the lifetime: the two clocks may disagree.
        adopt({ token: issued.token, expiresAt: Date.now() + issued.expires_in * 1000 });
        then();
      })
      .catch(function () {
        setConnected(false, "暂时无法连接，正在重试…");
        retryLater();
      });
  }

  /* --- Socket.IO over a raw websocket: "0" open, "40" namespace connect, "42[event, data]",
   * and the server's "2" ping answered by "3" pong. --- */
  var socket = null;
  var connected = false;
  var retryDelay = 500;
  var typingTimer = null;

  function setConnected(isConnected, text) {
    connected = isConnected;
    input.disabled = !isConnected;
    send.disabled = !isConnected;
    status.textContent = text;
    root.dataset.connected = String(isConnected);
  }

  function emit(event, data) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send("42" + JSON.stringify([event, data]));
  }

  function retryLater() {
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, MAX_RETRY_MS);
  }

  function connect() {
    withSession(function () {
      var url = server.replace(/^http/, "ws").replace(/\/$/, "") + "/socket.io/?EIO=4&transport=websocket";
      var opened = new WebSocket(url);
      socket = opened;
      opened.onmessage = function (message) { onPacket(String(message.data)); };
      opened.onclose = function () {
        if (socket !== opened) return;
        socket = null;
        setConnected(false, "连接已断开，正在重连…");
        retryLater();
      };
      opened.onerror = function () { opened.close(); };
    });
  }

  function onPacket(packet) {
    if (packet === "2") { socket.send("3"); return; }
    if (packet.charAt(0) === "0") { socket.send("40"); return; }
    if (packet.indexOf("40") === 0) { emit("session_request", { token: chat && chat.token }); return; }
    if (packet.indexOf("42") !== 0) return;
    var event = JSON.parse(packet.slice(2));
    if (event[0] === "session_confirm") {
      // Its payload is the session id: not needed here, and never shown.
      retryDelay = 500;
      setConnected(true, "在线");
    } else if (event[0] === "session_invalid") {
      setConnected(false, "会话已结束，正在开始新的会话…");
      endSession();
    } else if (event[0] === "bot_uttered") {
      onBotMessage(event[1] || {});
    }
  }

  function onBotMessage(message) {
    clearTimeout(typingTimer);
    // Rasa sends a turn as several messages with no end marker: keep the indicator briefly.
    typingTimer = setTimeout(function () { typing.hidden = true; }, 600);
    if (message.text) remember("bot", message.text);
    var buttons = message.quick_replies || message.buttons;
    if (buttons && buttons.length) showReplies(buttons);
    var custom = message.custom || {};
    if (custom.expect) {
      setExpect({ slot: String(custom.expect.slot), type: String(custom.expect.type),
                  private: custom.expect.private === true });
    }
    if (custom.outcome) setExpect(null);
    // live false: nobody is online; the bot offered a callback and goes on answering.
    if (custom.handoff && custom.handoff.live !== false && !handedOver) {
      joinQueue();
      remember("system", HANDOFF_TEXT);
    }
    if (custom.live_agent) onAgent(custom.live_agent);
  }

  /* --- A person at the other end: the queue, the agent's words, the way back to the bot. --- */
  var handoffTimer = null;

  function joinQueue() {
    handedOver = true;
    save("handoff", true);
    banner.hidden = false;
    clearInterval(handoffTimer);
    handoffTimer = setInterval(checkHandoff, HANDOFF_POLL_MS);
    checkHandoff();
  }

  function leaveQueue() {
    handedOver = false;
    save("handoff", false);
    banner.hidden = true;
    banner.textContent = HANDOFF_TEXT;
    alternatives.hidden = true;
    setNoting(false);
    clearInterval(handoffTimer);
  }

  function onAgent(agent) {
    // Each line once: it may come on the socket and again from a check after a reconnect.
    if (typeof agent.seq === "number") {
      if (agent.seq <= agentSeq) return;
      agentSeq = agent.seq;
      save("agentSeq", agentSeq);
    }
    var name = String(agent.name || "");
    if (agent.state === "message") { remember("agent", String(agent.text || ""), undefined, name); return; }
    remember("system", String(agent.text || ""));
    if (agent.state === "joined") {
      if (!handedOver) joinQueue();
      banner.textContent = "人工客服 " + name + " 正在为您服务";
      alternatives.hidden = true;
    } else if (agent.state === "left") {
      leaveQueue();
    }
  }

  function chatHandoff(path, method, body) {
    var headers = { Authorization: "Bearer " + (chat && chat.token) };
    if (body) headers["Content-Type"] = "application/json";
    return fetch(base + "chat/handoff" + path, { method: method, headers: headers, credentials: "omit",
      cache: "no-store", body: body ? JSON.stringify(body) : undefined });
  }

  function checkHandoff() {
    if (!chat) return;
    chatHandoff("?after=" + (agentSeq + 1), "GET").then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (!state || !handedOver) return;
        (state.agent_lines || []).forEach(onAgent); // what the agent said while the socket was down
        if (!handedOver) return; // one of them was the agent leaving
        if (state.state === "waiting") {
          var ahead = Math.max(0, (state.position || 1) - 1);
          var minutes = Math.max(1, Math.ceil((state.estimated_wait_seconds || 60) / 60));
          banner.textContent = state.note_left ? "已收到您的留言，客服会尽快处理"
            : "排队中：您前面还有 " + ahead + " 位客户，预计等待约 " + minutes + " 分钟";
          alternatives.hidden = !state.offer_alternatives || state.note_left;
        } else if (state.state === "accepted") {
          banner.textContent = "人工客服 " + (state.agent_name || "") + " 正在为您服务";
          alternatives.hidden = true;
        } else {
          leaveQueue(); // closed, given up, or unknown: the bot answers again
        }
      }).catch(function () { /* the next check retries */ });
  }

  function setNoting(on) {
    noting = on;
    input.placeholder = on ? "请输入留言内容，客服会尽快处理" : "请输入您的问题";
    root.dataset.noting = String(on);
  }

  callbackChoice.addEventListener("click", function () {
    alternatives.hidden = true;
    chatHandoff("/callback", "POST").then(function (response) {
      if (response.ok) leaveQueue(); // the bot now asks for the callback's details
      else alternatives.hidden = false;
    }).catch(function () { alternatives.hidden = false; });
  });
  noteChoice.addEventListener("click", function () { setNoting(true); input.focus(); });

  function leaveNote(text) {
    remember("user", text);
    setNoting(false);
    chatHandoff("/note", "POST", { text: text.slice(0, 500) }).then(function (response) {
      if (!response.ok) throw new Error("note refused");
      remember("system", NOTE_SENT_TEXT);
      alternatives.hidden = true;
    }).catch(function () { remember("system", "留言未能提交，请稍后再试。"); });
  }

  function say(text, payload) {
    if (!connected || !text.trim()) return;
    if (!chat || chat.expiresAt <= Date.now()) { endSession(); return; }
    remember("user", text, askedForIdentity() ? MASK : text);
    replies.textContent = "";
    typing.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { typing.hidden = true; }, 20000);
    // Only the message: the channel knows the session from the socket and sets the metadata.
    emit("user_uttered", { message: payload || text });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (noting && input.value.trim()) leaveNote(input.value.trim());
    else say(input.value);
    input.value = "";
    input.focus();
  });

  function start() {
    document.body.appendChild(root);
    transcript.forEach(render);
    setExpect(expecting);
    if (chat) adopt(chat);
    if (handedOver) joinQueue(); // a reload keeps the queue place or the agent
    setOpen(startOpen);
    setConnected(false, "连接中…");
    connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

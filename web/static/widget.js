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
 * session_invalid) everything stored is cleared and a new session starts with a fresh transcript. */
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
  var RENEWED_TEXT = "上一次会话已结束，已为您开始新的会话。";
  var MASK = "••••";
  // Answers to these questions prove who the customer is: never kept in the browser.
  var IDENTITY_SLOTS = ["phone_number", "customer_name", "id_last4", "otp_code"];
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
  [header, log, banner, typing, replies, form].forEach(function (node) { panel.appendChild(node); });
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
    item.appendChild(el("span", "fin-chat-who", entry.from === "user" ? "我" : entry.from === "bot" ? "客服" : "系统"));
    item.appendChild(el("p", "fin-chat-text", entry.text));
    var time = el("time", "fin-chat-time", clock(entry.at));
    time.dateTime = new Date(entry.at).toISOString();
    item.appendChild(time);
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  // `kept` is what the stored transcript gets; the page shows `text`.
  function remember(from, text, kept) {
    var at = Date.now();
    transcript.push({ from: from, text: kept === undefined ? String(text) : kept, at: at });
    if (transcript.length > MAX_KEPT) transcript = transcript.slice(-MAX_KEPT);
    save("transcript", transcript);
    render({ from: from, text: String(text), at: at });
  }

  function setExpect(expect) {
    expecting = expect;
    save("expect", expect);
    if (expect) root.dataset.expect = expect.slot;
    else delete root.dataset.expect;
    input.inputMode = expect && IDENTITY_TYPES.indexOf(expect.type) >= 0 ? "numeric" : "text";
  }

  function askedForIdentity() {
    return !!expecting && (IDENTITY_SLOTS.indexOf(expecting.slot) >= 0 || IDENTITY_TYPES.indexOf(expecting.type) >= 0);
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
    handedOver = false;
    banner.hidden = true;
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
    if (custom.expect) setExpect({ slot: String(custom.expect.slot), type: String(custom.expect.type) });
    if (custom.outcome) setExpect(null);
    if (custom.handoff && !handedOver) {
      handedOver = true;
      save("handoff", true);
      banner.hidden = false;
      remember("system", HANDOFF_TEXT);
    }
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
    say(input.value);
    input.value = "";
    input.focus();
  });

  function start() {
    document.body.appendChild(root);
    transcript.forEach(render);
    setExpect(expecting);
    if (chat) adopt(chat);
    setOpen(startOpen);
    setConnected(false, "连接中…");
    connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

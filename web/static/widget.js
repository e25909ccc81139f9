/* Web chat widget for the assistant. Embed with one tag:
 *   <script src="https://HOST/widget.js" data-server="https://RASA-HOST" defer></script>
 * Speaks Socket.IO (v5 protocol over Engine.IO v4, websocket transport) to Rasa's socketio
 * channel directly: no client library, no build step. Every message is put in the page with
 * textContent, never as HTML. The transcript and the session id live in localStorage, so a
 * reload or a reconnect after a network or server restart keeps the conversation. */
(function () {
  "use strict";
  var script = document.currentScript;
  var server = (script && script.dataset.server) || location.origin;
  var title = (script && script.dataset.title) || "在线客服";
  var startOpen = script && script.dataset.open === "true";
  var base = script ? script.src.replace(/widget\.js(\?.*)?$/, "") : "/";
  var STORE = "fin-chat:";
  var MAX_KEPT = 200;
  var HANDOFF_TEXT = "正在为您转接人工客服…";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function load(key, fallback) {
    try { var value = localStorage.getItem(STORE + key); return value ? JSON.parse(value) : fallback; }
    catch (e) { return fallback; }
  }
  function save(key, value) {
    try { localStorage.setItem(STORE + key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }

  var sessionId = load("session", null);
  if (!sessionId) {
    sessionId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).replace(/-/g, "");
    save("session", sessionId);
  }
  var transcript = load("transcript:" + sessionId, []);
  var handedOver = load("handoff:" + sessionId, false);

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

  function remember(from, text) {
    var entry = { from: from, text: String(text), at: Date.now() };
    transcript.push(entry);
    if (transcript.length > MAX_KEPT) transcript = transcript.slice(-MAX_KEPT);
    save("transcript:" + sessionId, transcript);
    render(entry);
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

  function connect() {
    var url = server.replace(/^http/, "ws").replace(/\/$/, "") + "/socket.io/?EIO=4&transport=websocket";
    socket = new WebSocket(url);
    socket.onmessage = function (message) { onPacket(String(message.data)); };
    socket.onclose = function () {
      setConnected(false, "连接已断开，正在重连…");
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    };
    socket.onerror = function () { socket.close(); };
  }

  function onPacket(packet) {
    if (packet === "2") { socket.send("3"); return; }
    if (packet.charAt(0) === "0") { socket.send("40"); return; }
    if (packet.indexOf("40") === 0) { emit("session_request", { session_id: sessionId }); return; }
    if (packet.indexOf("42") !== 0) return;
    var event = JSON.parse(packet.slice(2));
    if (event[0] === "session_confirm") {
      retryDelay = 500;
      setConnected(true, "在线");
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
      root.dataset.expect = custom.expect.slot;
      input.inputMode = custom.expect.type === "digits" || custom.expect.type === "phone" ? "numeric" : "text";
    }
    if (custom.outcome) delete root.dataset.expect;
    if (custom.handoff && !handedOver) {
      handedOver = true;
      save("handoff:" + sessionId, true);
      banner.hidden = false;
      remember("system", HANDOFF_TEXT);
    }
  }

  function say(text, payload) {
    if (!connected || !text.trim()) return;
    remember("user", text);
    replies.textContent = "";
    typing.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { typing.hidden = true; }, 20000);
    emit("user_uttered", { message: payload || text, session_id: sessionId, metadata: { channel: "chat" } });
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
    setOpen(startOpen);
    setConnected(false, "连接中…");
    connect();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

/* The desk pages' DOM helpers (desk.js, campaigns.js, knowledge.js): every text goes in with textContent,
 * never as HTML. */
(function () {
  "use strict";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /* A label and its value in a <dl>; nothing to show is a dash. */
  function field(list, label, value) {
    list.appendChild(el("dt", "", label));
    list.appendChild(el("dd", "", value === null || value === undefined || value === "" ? "—" : value));
  }

  /* A pager under a list: "第 n / m 页，共 total <unit>" and its buttons, for one page of an answer
   * carrying offset, page_size and total (the hand-overs, the list of work, the knowledge proposals). */
  function showPager(info, back, forward, page, unit) {
    var pages = Math.max(1, Math.ceil(page.total / page.page_size));
    info.textContent = "第 " + (Math.floor(page.offset / page.page_size) + 1) + " / " + pages + " 页，共 "
      + page.total + " " + unit;
    back.disabled = page.offset === 0;
    forward.disabled = page.offset + page.page_size >= page.total;
  }

  window.DeskDom = { el: el, field: field, showPager: showPager };
})();

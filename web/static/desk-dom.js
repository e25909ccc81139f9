/* The desk pages' two DOM helpers (desk.js, campaigns.js): every text goes in with textContent,
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

  window.DeskDom = { el: el, field: field };
})();

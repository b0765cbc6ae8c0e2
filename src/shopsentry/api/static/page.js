// What the dashboard pages share: building nodes (text only, never HTML), status lines,
// and the API key form (the key is kept for the browser tab, shared by the pages).
window.shopsentryPage = (function () {
  "use strict";

  const KEY_STORE = "shopsentry.apiKey";

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function setStatus(text, ok, id) {
    const s = document.getElementById(id || "conn-status");
    s.textContent = text;
    s.className = "status " + (ok ? "ok" : "bad");
  }

  // The tab's key, else the demo key the page was served with (demo mode), else "".
  function storedKey() {
    return sessionStorage.getItem(KEY_STORE) || document.body.dataset.demoKey || "";
  }

  // Fill the key field; on Connect keep the key and hand it to ``onKey``.
  function bindKeyForm(onKey) {
    const input = document.getElementById("api-key");
    input.value = storedKey();
    document.getElementById("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      sessionStorage.setItem(KEY_STORE, key);
      onKey(key);
    });
  }

  return { el: el, setStatus: setStatus, storedKey: storedKey, bindKeyForm: bindKeyForm };
})();

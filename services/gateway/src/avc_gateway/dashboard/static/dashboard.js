// Shared by every dashboard page: copy buttons, and `window.avc` for the other scripts
// (the page's CSRF token and calls to the public API through /dashboard/api/v1/).
"use strict";
(function () {
  const main = document.getElementById("main");
  const csrf = main ? main.dataset.csrf : "";

  class ApiError extends Error {
    constructor(status, body) {
      super(body.error || "HTTP " + status);
      this.status = status;
      this.code = body.code || "error";
      this.requestId = body.request_id || "";
    }
    describe() {
      return this.message + " (" + this.code + (this.requestId ? ", request id " + this.requestId : "") + ")";
    }
  }

  async function call(method, path, body) {
    const headers = { "X-CSRF-Token": csrf };
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch("/dashboard/api/v1/" + path, init);
    return answer(response.status, await response.text());
  }

  // Turns an answer into data, or throws ApiError; a 401 means the session ended.
  function answer(status, text) {
    let body = {};
    try { body = text ? JSON.parse(text) : {}; } catch (_) { body = {}; }
    if (status === 401) {
      window.location.assign("/dashboard/login?expired=1");
    }
    if (status >= 400) throw new ApiError(status, body);
    return body;
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copy);
    const note = button.parentElement.querySelector(".copied");
    try {
      await navigator.clipboard.writeText(field.value);
      if (note) note.textContent = "Copied.";
    } catch (_) {
      field.select();
      if (note) note.textContent = "Selected: press Ctrl+C to copy.";
    }
  });

  window.avc = { csrf: csrf, call: call, answer: answer, ApiError: ApiError };
})();

// The videos page: drag-and-drop chunked uploads through the public API (several chunks in
// flight, progress per file, resumable after a reload, cancel) and a list that follows
// processing videos without a reload.
"use strict";
(function () {
  const IN_FLIGHT = 3;
  const STORE = "avc-upload:";
  const list = document.getElementById("video-list");
  const rows = document.getElementById("uploads");
  const template = document.getElementById("upload-row");
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");

  // The upload id is kept per file (name, size, modification time): picking the same file
  // again after a reload resumes that upload. It is no credential: the API checks the session.
  function fileKey(file) {
    return STORE + [file.name, file.size, file.lastModified].join(":");
  }

  function formatBytes(n) {
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
  }

  // POST one chunk with XMLHttpRequest (fetch has no upload progress).
  function sendChunk(uploadId, index, blob, onProgress, signal) {
    return new Promise(function (resolve, reject) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/dashboard/api/v1/upload/chunk");
      xhr.setRequestHeader("X-CSRF-Token", window.avc.csrf);
      xhr.setRequestHeader("X-Upload-ID", uploadId);
      xhr.setRequestHeader("X-Chunk-Index", String(index));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (e) { onProgress(e.loaded); };
      xhr.onload = function () {
        try { resolve(window.avc.answer(xhr.status, xhr.responseText)); } catch (e) { reject(e); }
      };
      xhr.onerror = function () { reject(new Error("The connection failed while sending a chunk.")); };
      xhr.onabort = function () { reject(new DOMException("cancelled", "AbortError")); };
      signal.addEventListener("abort", function () { xhr.abort(); });
      xhr.send(blob);
    });
  }

  class Upload {
    constructor(file) {
      this.file = file;
      this.controller = new AbortController();
      this.row = template.content.firstElementChild.cloneNode(true);
      this.row.querySelector(".name").textContent = file.name;
      this.bar = this.row.querySelector("progress");
      this.bar.setAttribute("aria-label", "Upload progress of " + file.name);
      this.row.querySelector(".cancel").addEventListener("click", () => this.cancel());
      rows.appendChild(this.row);
      this.stored = 0;      // bytes the server had when this page started sending
      this.sent = 0;        // bytes of chunks finished by this page
      this.inFlight = new Map();
      this.started = performance.now();
    }

    state(text) { this.row.querySelector(".state").textContent = text; }

    progress() {
      let loaded = this.stored + this.sent;
      this.inFlight.forEach(function (n) { loaded += n; });
      loaded = Math.min(loaded, this.file.size);
      this.bar.value = this.file.size ? (100 * loaded) / this.file.size : 100;
      const seconds = (performance.now() - this.started) / 1000;
      const speed = seconds > 0 ? (loaded - this.stored) / seconds : 0;
      this.row.querySelector(".bytes").textContent = formatBytes(loaded) + " of " + formatBytes(this.file.size);
      this.row.querySelector(".speed").textContent = "· " + formatBytes(speed) + "/s";
    }

    fail(error) {
      const text = error instanceof window.avc.ApiError ? error.describe() : String(error.message || error);
      this.row.querySelector(".error").textContent = text;
      this.state("failed");
    }

    async cancel() {
      this.controller.abort();
      this.state("cancelled");
      this.row.querySelector(".cancel").disabled = true;
      const id = localStorage.getItem(fileKey(this.file));
      localStorage.removeItem(fileKey(this.file));
      if (id) {
        try { await window.avc.call("DELETE", "upload/" + encodeURIComponent(id)); } catch (_) { /* gone already */ }
      }
    }

    // Returns the status of the upload kept for this file, or null to start afresh.
    async resumable() {
      const id = localStorage.getItem(fileKey(this.file));
      if (!id) return null;
      try {
        const status = await window.avc.call("GET", "upload/" + encodeURIComponent(id));
        if (status.status === "completed" && status.video_id) return status;
        if (status.size === this.file.size && status.missing) return status;
      } catch (error) {
        if (!(error instanceof window.avc.ApiError) || error.status === 401) throw error;
      }
      localStorage.removeItem(fileKey(this.file));
      return null;
    }

    async run() {
      try {
        this.state("starting");
        let status = await this.resumable();
        if (status && status.video_id) {
          return this.done(status.video_id);
        }
        if (status) {
          this.state("resuming");
        } else {
          const title = this.file.name.replace(/\.[^.]+$/, "");
          const init = await window.avc.call("POST", "upload/init",
            { filename: this.file.name, size: this.file.size, title: title });
          localStorage.setItem(fileKey(this.file), init.upload_id);
          status = Object.assign({ missing: [...Array(init.total_chunks).keys()] }, init);
          this.state("uploading");
        }
        const chunkSize = status.chunk_size;
        const missing = status.missing.slice();
        this.stored = this.file.size - missing.reduce((sum, i) =>
          sum + Math.min(chunkSize, this.file.size - i * chunkSize), 0);
        this.progress();
        const worker = async () => {
          while (missing.length && !this.controller.signal.aborted) {
            const index = missing.shift();
            const blob = this.file.slice(index * chunkSize, (index + 1) * chunkSize);
            await sendChunk(status.upload_id, index, blob, (n) => {
              this.inFlight.set(index, n);
              this.progress();
            }, this.controller.signal);
            this.inFlight.delete(index);
            this.sent += blob.size;
            this.progress();
          }
        };
        await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
        if (this.controller.signal.aborted) return;
        this.state("finishing");
        const done = await window.avc.call("POST", "upload/complete", { upload_id: status.upload_id });
        this.done(done.video_id);
      } catch (error) {
        if (error && error.name === "AbortError") return;
        this.controller.abort();
        this.fail(error);
      }
    }

    done(videoId) {
      localStorage.removeItem(fileKey(this.file));
      this.bar.value = 100;
      this.state("uploaded, processing");
      this.row.querySelector(".cancel").remove();
      this.row.dataset.videoId = videoId;
      refreshList();
    }
  }

  function start(files) {
    Array.from(files).forEach(function (file) { new Upload(file).run(); });
  }

  if (zone) {
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) { start(e.dataTransfer.files); });
    input.addEventListener("change", function () { start(input.files); input.value = ""; });
  }

  // Uploads this browser left unfinished: say so, so the user picks the files again.
  const pending = Object.keys(localStorage).filter(function (k) { return k.startsWith(STORE); });
  if (pending.length && rows) {
    const note = document.createElement("li");
    note.className = "upload resume-note";
    note.textContent = pending.length + " unfinished upload(s): choose the same file(s) again to resume where they stopped.";
    rows.appendChild(note);
  }

  // The list is the server's own rendering of this page, fetched again while videos process.
  async function refreshList() {
    const response = await fetch(window.location.pathname + window.location.search, { credentials: "same-origin" });
    if (response.redirected || !response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("video-list");
    if (fresh && list) list.replaceChildren(...fresh.childNodes);
    schedule();
  }

  let timer = null;
  function schedule() {
    if (timer !== null || !list) return;
    if (!list.querySelector('[data-status="processing"]')) return;
    timer = window.setTimeout(function () { timer = null; refreshList(); }, 2000);
  }
  schedule();
})();

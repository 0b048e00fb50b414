// The video page: the HLS player (native HLS, else the vendored hls.js), and a reload once a
// processing video is ready.
"use strict";
(function () {
  const box = document.getElementById("player");
  if (!box) return;
  const video = document.getElementById("video");
  if (video && box.dataset.hls) {
    const source = box.dataset.hls;
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ enableWorker: false });
      hls.loadSource(source);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = source;
    }
  }
  if (box.dataset.status === "processing") {
    const id = encodeURIComponent(box.dataset.videoId);
    const timer = window.setInterval(async function () {
      try {
        const current = await window.avc.call("GET", "videos/" + id);
        if (current.status !== "processing") {
          window.clearInterval(timer);
          window.location.reload();
        }
      } catch (_) { /* shown on the next reload */ }
    }, 2000);
  }
})();

// Reads the browser's camera, sends a JPEG to /predict at a steady rate (one request at a
// time) and draws the boxes and labels it gets back over the video, here in the browser.
"use strict";
const INTERVAL_MS = 250;
const video = document.getElementById("video");
const view = document.getElementById("view");
const grab = document.createElement("canvas");
let last = { faces: [] }, busy = false, pausedUntil = 0;

function status(text) { document.getElementById("status").textContent = text; }

// The boxes go on a transparent canvas over the video, in the video's own pixels.
function render() {
  if (video.videoWidth) {
    if (view.width !== video.videoWidth) { view.width = video.videoWidth; view.height = video.videoHeight; }
    const ctx = view.getContext("2d");
    ctx.clearRect(0, 0, view.width, view.height);
    drawFaces(ctx, last.faces || [], 1, 1);
  }
  requestAnimationFrame(render);
}

async function tick() {
  if (busy || !video.videoWidth || Date.now() < pausedUntil) return;
  busy = true;
  grab.width = video.videoWidth; grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  const t0 = performance.now();
  try {
    const r = await api("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ frame: grab.toDataURL("image/jpeg", 0.8) }),
    });
    const body = await r.json();
    if (!r.ok) {
      last = { faces: [] };  // stale boxes would mislead
      status("the appliance answered " + r.status + ": " + body.error);
      const wait = Number(r.headers.get("Retry-After") || 0);
      if (wait) { pausedUntil = Date.now() + wait * 1000; }
      return;
    }
    last = body;
    const em = document.getElementById("emotion");
    em.textContent = body.emotion || "none";
    em.style.color = colorOf(body.emotion);
    document.getElementById("faces").textContent = body.faces.length + " face(s)";
    document.getElementById("latency").textContent = Math.round(performance.now() - t0) + " ms round trip";
    status("live");
  } catch (e) {
    status("no answer: " + e.message);
  } finally {
    busy = false;
  }
}

async function start() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status("this browser gives no camera here (it needs https or http://localhost)");
    return;
  }
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    await video.play();
  } catch (e) {
    status("no camera: " + e.message);
    return;
  }
  status("waiting for the first answer…");
  requestAnimationFrame(render);
  setInterval(tick, INTERVAL_MS);
}
start();

// The live view: polls /api/cameras and /health, follows /api/events (Server-Sent Events read
// through fetch, so the bearer token goes in a header, never in the URL).
"use strict";
const cards = {};
const HISTORY_S = 600;

function card(name) {
  if (cards[name]) return cards[name];
  const c = el("section", { class: "card", id: "camera-" + name, "data-camera": name });
  c.innerHTML =
    '<h2><span class="name"></span><span class="pill status">…</span><span class="fps dim"></span></h2>' +
    '<div class="stage"><img class="snapshot" alt="latest frame" hidden><canvas class="boxes" width="640" height="360"></canvas></div>' +
    '<div class="facts"><span>faces in view <b class="faces">0</b></span>' +
    '<span>dominant emotion <b class="dominant">none</b></span>' +
    '<span class="dim">last frame <span class="age">–</span></span></div>' +
    '<canvas class="chart" width="600" height="90"></canvas><div class="legend"></div>' +
    '<ul class="events"></ul>';
  c.querySelector(".name").textContent = name;
  document.getElementById("cameras").append(c);
  cards[name] = { root: c, snapSeq: 0, snapUrl: null };
  return cards[name];
}

function drawBoxes(canvas, cam) {
  const [w, h] = cam.frame_size || [640, 360];
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#0b0d10"; ctx.fillRect(0, 0, w, h);
  ctx.fillStyle = "#3a4048"; ctx.font = "16px system-ui, sans-serif";
  ctx.fillText(!cam.online ? "offline" : cam.frame_size ? "snapshots are off: faces only" : "no frame yet", 12, 24);
  drawFaces(ctx, cam.faces || [], 1, 1);
}

function drawChart(canvas, legend, history) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.fillStyle = "#14181d"; ctx.fillRect(0, 0, W, H);
  const pts = history.filter((p) => p.mix);
  if (!pts.length) return;
  const labels = Object.keys(pts[0].mix);
  const now = Date.now() / 1000;
  const x = (ts) => W * (1 - Math.min(HISTORY_S, Math.max(0, now - ts)) / HISTORY_S);
  // The camera's state holds until the next one (states come on change and on a heartbeat),
  // so each sample is a step to the next, the last one up to now: stacked, in label order.
  pts.forEach((p, i) => {
    const x0 = x(p.ts), x1 = i + 1 < pts.length ? x(pts[i + 1].ts) : W;
    let base = H;
    for (const l of labels) {
      const h = (p.mix[l] || 0) * H;
      if (h > 0) { ctx.fillStyle = colorOf(l); ctx.fillRect(x0, base - h, Math.max(1, x1 - x0), h); }
      base -= h;
    }
  });
  ctx.fillStyle = "#5b6470"; ctx.font = "11px system-ui, sans-serif";
  ctx.fillText("emotion mix, last " + HISTORY_S / 60 + " min", 6, 12);
  if (!legend.childElementCount) {
    for (const l of labels) {
      const s = el("span"); const i = el("i"); i.style.background = colorOf(l);
      s.append(i, document.createTextNode(l)); legend.append(s);
    }
  }
}

async function refreshSnapshot(c, name) {
  const r = await api("/api/cameras/" + encodeURIComponent(name) + "/latest.jpg");
  if (!r.ok) return;
  const url = URL.createObjectURL(await r.blob());
  const img = c.root.querySelector(".snapshot");
  img.onload = () => { if (c.snapUrl) URL.revokeObjectURL(c.snapUrl); c.snapUrl = url; };
  img.src = url;
}

async function refreshCameras() {
  const r = await api("/api/cameras");
  const data = await r.json();
  for (const [name, cam] of Object.entries(data.cameras)) {
    const c = card(name), root = c.root;
    const status = root.querySelector(".status");
    status.textContent = cam.online ? "online" : "offline";
    status.className = "pill status " + (cam.online ? "ok" : "offline");
    root.querySelector(".fps").textContent = cam.fps !== undefined ? cam.fps.toFixed(1) + " fps" : "";
    const state = cam.state || {};
    root.querySelector(".faces").textContent = state.faces || 0;
    const dom = root.querySelector(".dominant");
    dom.textContent = state.dominant_emotion || "none";
    dom.style.color = colorOf(state.dominant_emotion);
    root.querySelector(".age").textContent =
      cam.last_frame_age_s === null || cam.last_frame_age_s === undefined ? "–" : cam.last_frame_age_s.toFixed(1) + " s ago";
    const img = root.querySelector(".snapshot"), boxes = root.querySelector(".boxes");
    if (data.snapshots && cam.snapshot && cam.online) {
      img.hidden = false; boxes.hidden = true;
      refreshSnapshot(c, name).catch(() => {});
    } else {
      img.hidden = true; boxes.hidden = false;
      drawBoxes(boxes, cam);
    }
    drawChart(root.querySelector(".chart"), root.querySelector(".legend"), cam.history || []);
  }
}

async function refreshHealth() {
  const r = await api("/health");
  const h = await r.json();
  const pill = document.getElementById("health");
  pill.textContent = h.status; pill.className = "pill " + h.status;
  document.getElementById("mqtt").textContent =
    "MQTT " + (h.mqtt.connected ? "connected" : "down") + ", " + h.undelivered_events + " events undelivered";
  document.getElementById("version").textContent = "v" + h.version;
}

function addEvent(ev, prepend) {
  const c = cards[ev.camera]; if (!c) return;
  const list = c.root.querySelector("ul.events");
  const t = new Date(ev.ts * 1000).toLocaleTimeString();
  const li = el("li", {}, t + "  " + ev.event_type + "  face " + ev.track_id + "  " + ev.emotion + " (" + Number(ev.confidence).toFixed(2) + ")");
  if (prepend) list.prepend(li); else list.append(li);
  while (list.childElementCount > 30) list.lastChild.remove();
}

async function followEvents() {
  for (;;) {
    try {
      const r = await api("/api/events", { headers: { Accept: "text/event-stream" } });
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
          if (data) addEvent(JSON.parse(data), true);
        }
      }
    } catch (e) { /* dropped: try again below */ }
    await new Promise((ok) => setTimeout(ok, 3000));
  }
}

async function start() {
  await refreshCameras().catch(() => {});
  const recent = await api("/api/events/recent").then((r) => r.json()).catch(() => ({ events: [] }));
  for (const ev of recent.events) addEvent(ev, true);
  refreshHealth().catch(() => {});
  // Polling stops while the page waits for its token (askToken reloads it).
  setInterval(() => { if (!document.querySelector("form.token")) refreshCameras().catch(() => {}); }, 1000);
  setInterval(() => { if (!document.querySelector("form.token")) refreshHealth().catch(() => {}); }, 5000);
  followEvents();
}
start();

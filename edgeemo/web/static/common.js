// Shared by the pages: the bearer token (kept in this browser only) and JSON requests with it.
"use strict";
const EMOTION_COLORS = {
  angry: "#e5534b", disgust: "#6cb6ff", fear: "#b083f0", happy: "#57ab5a",
  sad: "#539bf5", surprise: "#daaa3f", neutral: "#909dab", contempt: "#c96198",
};
function colorOf(label) { return EMOTION_COLORS[label] || "#cccccc"; }

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { localStorage.setItem("edgeemo-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  return localStorage.getItem("edgeemo-token");
}

function authHeaders(extra) {
  const t = token();
  return Object.assign({}, extra || {}, t ? { Authorization: "Bearer " + t } : {});
}

function askToken() {
  if (document.querySelector("form.token")) return;
  const form = document.createElement("form");
  form.className = "token card";
  form.innerHTML = '<p>This appliance needs its access token (the value of EDGEEMO_HTTP_TOKEN or the http_token credential).</p>' +
    '<input type="password" name="t" autocomplete="off" placeholder="token"> <button>Save</button>';
  form.onsubmit = (e) => { e.preventDefault(); localStorage.setItem("edgeemo-token", form.t.value); location.reload(); };
  document.body.prepend(form);
}

async function api(path, opts) {
  const o = Object.assign({}, opts || {});
  o.headers = authHeaders(o.headers);
  const r = await fetch(path, o);
  if (r.status === 401) { askToken(); throw new Error("token needed"); }
  return r;
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawFaces(ctx, faces, sx, sy) {
  ctx.lineWidth = 3;
  ctx.font = "bold 16px system-ui, sans-serif";
  for (const f of faces) {
    const [x, y, w, h] = f.box;
    const label = f.emotion ? f.emotion + (f.confidence !== undefined ? " " + f.confidence.toFixed(2) : "") : "face";
    const c = f.emotion ? colorOf(f.emotion) : "#aaaaaa";
    ctx.strokeStyle = c; ctx.fillStyle = c;
    ctx.strokeRect(x * sx, y * sy, w * sx, h * sy);
    const tw = ctx.measureText(label).width + 8;
    ctx.fillRect(x * sx - 1.5, Math.max(0, y * sy - 22), tw, 22);
    ctx.fillStyle = "#000";
    ctx.fillText(label, x * sx + 3, Math.max(16, y * sy - 6));
  }
}

// convstack view: tiles on a canvas, before/after, overlays, and the retouch brush.
import { blend, strokeBox, strokeMask } from "./brush.js";

const token = new URLSearchParams(location.search).get("token") || "";
const headers = token ? { "X-Convstack-Token": token } : {};
const $ = (id) => document.getElementById(id);
const canvas = $("view");
const ctx = canvas.getContext("2d", { willReadFrequently: true });
const scratch = document.createElement("canvas");
const sctx = scratch.getContext("2d", { willReadFrequently: true });

const state = {
  info: null, s: 1, ox: 0, oy: 0,          // scale (canvas px per image px), image top-left
  tool: "pan", source: 0, compare: "", split: 0.5,
  overlay: "", opacity: 0.5, overlayImage: null, overlayKey: "",
  radius: 30, hardness: 0.5,
  strokes: [], redo: [], current: null,
};
const tiles = new Map();     // key -> ImageBitmap, or "loading"
const masks = new WeakMap(); // stroke -> {key, mask}: its weights for the current view
const thumbs = new Map();    // source -> ImageBitmap
const TILE_LIMIT = 600;
let pending = false, firstPaintMs = null, lastRenderMs = null, renderCount = 0;
let painted = null;
const firstPaint = new Promise((resolve) => { painted = resolve; });

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers, ...(options.headers || {}) } });
  return response;
}

async function bitmap(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return await createImageBitmap(await response.blob());
}

function levelFor(scale) {
  const k = Math.floor(Math.log2(1 / scale) + 1e-9);
  return Math.max(0, Math.min(state.info.levels - 1, k));
}

function schedule() {
  if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; render(); }); }
}

function needTile(source, level, row, col) {
  const key = `${source}/${level}/${row}/${col}`;
  const found = tiles.get(key);
  if (found && found !== "loading") { tiles.delete(key); tiles.set(key, found); return found; }
  if (!found) {
    tiles.set(key, "loading");
    bitmap(`/api/tile/${key}`).then((b) => {
      tiles.set(key, b);
      while (tiles.size > TILE_LIMIT) {
        const oldest = tiles.keys().next().value;
        const old = tiles.get(oldest);
        if (old && old !== "loading") old.close();
        tiles.delete(oldest);
      }
      schedule();
    }).catch((e) => { tiles.delete(key); status(String(e.message || e), true); });
  }
  return null;
}

function needThumb(source) {
  if (!thumbs.has(source)) {
    thumbs.set(source, "loading");
    bitmap(`/api/thumb/${source}`).then((b) => { thumbs.set(source, b); schedule(); })
      .catch(() => thumbs.delete(source));
  }
  const t = thumbs.get(source);
  return t === "loading" ? null : t;
}

// Draw one image's tiles for the current view; returns how many are still missing.
function drawImage(c, source) {
  const { info, s, ox, oy } = state;
  const level = levelFor(s), f = 2 ** level, T = info.tile;
  const w = canvas.width, h = canvas.height;
  c.imageSmoothingEnabled = s < 1;
  const thumb = needThumb(source);
  if (thumb) c.drawImage(thumb, -ox * s, -oy * s, info.cols * s, info.rows * s);
  const span = T * f;  // image pixels per tile
  const r0 = Math.max(0, Math.floor(oy / span)), c0 = Math.max(0, Math.floor(ox / span));
  const r1 = Math.min(Math.ceil(info.rows / span), Math.ceil((oy + h / s) / span));
  const c1 = Math.min(Math.ceil(info.cols / span), Math.ceil((ox + w / s) / span));
  let missing = 0;
  for (let r = r0; r < r1; r++) {
    for (let q = c0; q < c1; q++) {
      const b = needTile(source, level, r, q);
      if (!b) { missing++; continue; }
      c.drawImage(b, (q * span - ox) * s, (r * span - oy) * s, b.width * f * s, b.height * f * s);
    }
  }
  return missing;
}

function viewBox(box) {  // image [top, left, bottom, right] -> clipped canvas rectangle
  const { s, ox, oy } = state;
  const x0 = Math.max(0, Math.floor((box[1] - ox) * s) - 1);
  const y0 = Math.max(0, Math.floor((box[0] - oy) * s) - 1);
  const x1 = Math.min(canvas.width, Math.min(state.info.cols - ox, box[3] + 1 - ox) * s + 2);
  const y1 = Math.min(canvas.height, Math.min(state.info.rows - oy, box[2] + 1 - oy) * s + 2);
  return [x0, y0, Math.floor(x1) - x0, Math.floor(y1) - y0];
}

function drawStrokes() {
  const all = state.current ? [...state.strokes, state.current] : state.strokes;
  if (!all.length) return 0;
  let box = [Infinity, Infinity, -Infinity, -Infinity];
  for (const st of all) {
    const b = strokeBox(st);
    box = [Math.min(box[0], b[0]), Math.min(box[1], b[1]), Math.max(box[2], b[2]), Math.max(box[3], b[3])];
  }
  const [x0, y0, w, h] = viewBox(box);
  if (w <= 0 || h <= 0) return 0;
  const out = ctx.getImageData(x0, y0, w, h);  // the region all strokes reach
  const original = new Uint8ClampedArray(out.data);
  const sources = new Map();
  let missing = 0;
  const view = { s: state.s, ox: state.ox, oy: state.oy };
  for (const st of all) {
    let src = original;
    if (!st.erase) {
      if (!sources.has(st.frame)) {
        sctx.clearRect(0, 0, scratch.width, scratch.height);
        missing += drawImage(sctx, `f${st.frame}`);
        sources.set(st.frame, sctx.getImageData(x0, y0, w, h).data);
      }
      src = sources.get(st.frame);
    }
    // the stroke's own rectangle within the region: the work is its area, not the view's
    const [sx, sy, sw, sh] = viewBox(strokeBox(st));
    const bx = Math.max(sx, x0), by = Math.max(sy, y0);
    const bw = Math.min(sx + sw, x0 + w) - bx, bh = Math.min(sy + sh, y0 + h) - by;
    if (bw <= 0 || bh <= 0) continue;
    // a stroke's mask is kept for the view it was made for (panning or zooming, or a
    // point added while painting, makes it again): a redraw costs the new stroke only
    const key = `${view.s} ${view.ox} ${view.oy} ${bx} ${by} ${bw} ${bh} ${st.points.length}`;
    let cached = masks.get(st);
    if (!cached || cached.key !== key) {
      const mask = new Float32Array(bw * bh);
      strokeMask(mask, bx, by, bw, bh, view, st);
      cached = { key, mask };
      masks.set(st, cached);
    }
    blend(out.data, src, w, cached.mask, bx - x0, by - y0, bw, bh);
  }
  ctx.putImageData(out, x0, y0);
  return missing;
}

function render() {
  if (!state.info) return;
  const t0 = performance.now();
  const { info, s, ox, oy } = state;
  ctx.fillStyle = "#111";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  let missing = drawImage(ctx, "result");
  missing += drawStrokes();
  if (state.compare !== "") {
    const x = Math.round(canvas.width * state.split);
    ctx.save();
    ctx.beginPath(); ctx.rect(x, 0, canvas.width - x, canvas.height); ctx.clip();
    ctx.fillStyle = "#111"; ctx.fillRect(x, 0, canvas.width - x, canvas.height);
    missing += drawImage(ctx, `f${state.compare}`);
    ctx.restore();
    ctx.fillStyle = "#e8b800"; ctx.fillRect(x - 1, 0, 2, canvas.height);
  }
  if (state.overlay && state.overlayImage) {
    ctx.save();
    ctx.globalAlpha = state.opacity;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(state.overlayImage, -ox * s, -oy * s, info.cols * s, info.rows * s);
    ctx.restore();
  }
  if (state.cursor && (state.tool === "paint" || state.tool === "erase")) {
    ctx.strokeStyle = state.tool === "erase" ? "#ff6060" : "#ffffff";
    ctx.beginPath();
    ctx.arc(state.cursor.x, state.cursor.y, Math.max(1, state.radius * s), 0, 2 * Math.PI);
    ctx.stroke();
  }
  lastRenderMs = performance.now() - t0;
  renderCount++;
  if (missing === 0 && firstPaintMs === null) { firstPaintMs = performance.now(); painted(); }
  $("zoom").textContent = `${(s * 100).toFixed(s < 0.1 ? 1 : 0)} %`;
  $("undo").disabled = !state.strokes.length;
  $("redo").disabled = !state.redo.length;
}

// ---------------------------------------------------------------- view changes

function resize() {
  const dpr = window.devicePixelRatio || 1;
  const rect = canvas.getBoundingClientRect();
  canvas.width = scratch.width = Math.max(1, Math.round(rect.width * dpr));
  canvas.height = scratch.height = Math.max(1, Math.round(rect.height * dpr));
  schedule();
}

function fit() {
  const { info } = state;
  state.s = Math.min(canvas.width / info.cols, canvas.height / info.rows);
  state.ox = (info.cols - canvas.width / state.s) / 2;
  state.oy = (info.rows - canvas.height / state.s) / 2;
  schedule();
}

// Zoom to `scale` keeping image point (row, col) under canvas point (x, y).
function zoomAt(scale, x, y) {
  const col = state.ox + x / state.s, row = state.oy + y / state.s;
  state.s = Math.min(64, Math.max(1e-3, scale));
  state.ox = col - x / state.s;
  state.oy = row - y / state.s;
  schedule();
}

function zoomTo(scale, row, col) {  // centre image point (row, col) at `scale`
  state.s = scale;
  state.ox = Math.round(col - canvas.width / 2 / scale);
  state.oy = Math.round(row - canvas.height / 2 / scale);
  schedule();
}

function canvasPoint(event) {
  const rect = canvas.getBoundingClientRect(), dpr = canvas.width / rect.width;
  return { x: (event.clientX - rect.left) * dpr, y: (event.clientY - rect.top) * dpr };
}

function imagePoint(p) {  // canvas point -> image [row, col] (pixel centres at integers)
  return [state.oy + p.y / state.s - 0.5, state.ox + p.x / state.s - 0.5];
}

function clientPoint(row, col) {  // image (row, col) -> client coordinates (for tests)
  const rect = canvas.getBoundingClientRect(), dpr = canvas.width / rect.width;
  return {
    x: rect.left + ((col + 0.5 - state.ox) * state.s) / dpr,
    y: rect.top + ((row + 0.5 - state.oy) * state.s) / dpr,
  };
}

// ---------------------------------------------------------------- input

let drag = null;
canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  const p = canvasPoint(event);
  const pan = state.tool === "pan" || event.button === 1 || event.button === 2 || event.shiftKey;
  if (pan) { drag = { x: p.x, y: p.y, ox: state.ox, oy: state.oy }; return; }
  if (state.tool === "pick") { pick(imagePoint(p)); return; }
  if (state.tool === "erase" || state.info.frames.length) {
    state.current = {
      frame: state.tool === "erase" ? null : state.source,
      radius: state.radius, hardness: state.hardness, erase: state.tool === "erase",
      points: [imagePoint(p)],
    };
    schedule();
  } else {
    status("no frames to paint from: start the viewer with --frames", true);
  }
});
canvas.addEventListener("pointermove", (event) => {
  const p = canvasPoint(event);
  state.cursor = p;
  if (drag) {
    state.ox = drag.ox - (p.x - drag.x) / state.s;
    state.oy = drag.oy - (p.y - drag.y) / state.s;
  } else if (state.current) {
    const q = imagePoint(p), last = state.current.points[state.current.points.length - 1];
    const step = Math.max(0.5, state.current.radius * 0.1);
    if (Math.hypot(q[0] - last[0], q[1] - last[1]) >= step) state.current.points.push(q);
  }
  schedule();
});
function endStroke() {
  drag = null;
  if (state.current) {
    state.strokes.push(state.current);
    state.current = null;
    state.redo = [];
    status(`${state.strokes.length} stroke(s); Save writes a new file`);
    schedule();
  }
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
canvas.addEventListener("pointerleave", () => { state.cursor = null; schedule(); });
canvas.addEventListener("contextmenu", (event) => event.preventDefault());
canvas.addEventListener("wheel", (event) => {
  event.preventDefault();
  const p = canvasPoint(event);
  zoomAt(state.s * Math.pow(2, -event.deltaY / 300), p.x, p.y);
}, { passive: false });

function undo() { if (state.strokes.length) { state.redo.push(state.strokes.pop()); schedule(); } }
function redo() { if (state.redo.length) { state.strokes.push(state.redo.pop()); schedule(); } }

function setTool(tool) {
  state.tool = tool;
  for (const input of document.querySelectorAll("input[name=tool]")) input.checked = input.value === tool;
  canvas.classList.toggle("pan", tool === "pan");
}

function setRadius(r) {
  state.radius = Math.max(1, Math.min(400, Math.round(r)));
  $("radius").value = state.radius;
  $("radius-value").textContent = state.radius;
}

window.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type === "text") return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") { event.shiftKey ? redo() : undo(); event.preventDefault(); }
  else if ((event.ctrlKey || event.metaKey) && key === "y") { redo(); event.preventDefault(); }
  else if (key === "b") setTool("paint");
  else if (key === "e") setTool("erase");
  else if (key === "p") setTool("pick");
  else if (key === "h" || key === " ") setTool("pan");
  else if (key === "f") fit();
  else if (key === "1") zoomAt(1, canvas.width / 2, canvas.height / 2);
  else if (key === "+" || key === "=") zoomAt(state.s * 2, canvas.width / 2, canvas.height / 2);
  else if (key === "-") zoomAt(state.s / 2, canvas.width / 2, canvas.height / 2);
  else if (key === "[") setRadius(state.radius / 1.25);
  else if (key === "]") setRadius(state.radius * 1.25);
});

function setSource(index) {
  state.source = index;
  for (const el of document.querySelectorAll(".frame")) el.classList.toggle("source", Number(el.dataset.index) === index);
  prefetch(`f${index}`);
  if (state.overlay === "sharpness") loadOverlay();
}

function prefetch(source) {  // the visible tiles of a frame, so that the brush preview is instant
  sctx.save(); drawImage(sctx, source); sctx.restore();
}

async function pick(point) {
  const response = await api(`/api/pick?row=${point[0]}&col=${point[1]}`);
  const body = await response.json();
  if (!response.ok) { status(body.error, true); return; }
  setSource(body.frame);
  setTool("paint");
  status(`frame ${body.frame} (${state.info.frames[body.frame].name}) is the sharpest there: painting from it`);
}

async function loadOverlay() {
  const kind = state.overlay;
  const key = kind === "sharpness" ? `sharpness?frame=${state.source}` : kind;
  state.overlayKey = key;
  if (!kind) { state.overlayImage = null; schedule(); return; }
  try {
    const b = await bitmap(`/api/overlay/${key}`);
    if (state.overlayKey === key) { state.overlayImage = b; schedule(); }
  } catch (e) { status(String(e.message || e), true); }
}

async function save(name, overwrite = false) {
  const document_ = {
    format: "convstack-strokes", version: 1,
    image: { rows: state.info.rows, cols: state.info.cols },
    frames: state.info.frames.map((f) => f.name),
    strokes: state.strokes,
  };
  status("saving...");
  const response = await api("/api/save", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ strokes: document_, name, overwrite }),
  });
  const body = await response.json();
  if (response.status === 409 && !overwrite) {
    if (window.confirm(`${name} already exists. Replace it?`)) return save(name, true);
    status("not saved: the file exists", true);
    return body;
  }
  if (!response.ok) { status(`not saved: ${body.error}`, true); return body; }
  status(`saved ${body.saved} and ${body.strokes}`);
  return body;
}

// ---------------------------------------------------------------- start

async function start() {
  if (token) history.replaceState(null, "", location.pathname);  // the cookie holds it now
  const response = await api("/api/info");
  if (!response.ok) { status(`cannot load: ${response.status} ${await response.text()}`, true); return; }
  const info = state.info = await response.json();
  $("title").textContent = info.name;
  document.title = `${info.name} - convstack view`;
  $("save-name").value = info.save_name;
  const list = $("frames"), compare = $("compare");
  for (const frame of info.frames) {
    const el = document.createElement("div");
    el.className = "frame"; el.dataset.index = frame.index; el.title = frame.name;
    const img = document.createElement("img");
    img.alt = frame.name; img.loading = "lazy";
    firstPaint.then(() => { img.src = `/api/thumb/f${frame.index}`; });  // the result first
    el.append(img, `${frame.index}: ${frame.name}`);
    el.addEventListener("click", () => { setSource(frame.index); if (state.tool === "pan") setTool("paint"); });
    list.append(el);
    compare.append(new Option(`${frame.index}: ${frame.name}`, String(frame.index)));
  }
  if (!info.frames.length) list.append("(no frames: view only)");
  if (!info.depth) $("overlay").querySelector("option[value=depth]").disabled = true;
  for (const input of document.querySelectorAll("input[name=tool]")) input.addEventListener("change", () => setTool(input.value));
  $("fit").onclick = fit;
  $("one").onclick = () => zoomAt(1, canvas.width / 2, canvas.height / 2);
  $("zoom-in").onclick = () => zoomAt(state.s * 2, canvas.width / 2, canvas.height / 2);
  $("zoom-out").onclick = () => zoomAt(state.s / 2, canvas.width / 2, canvas.height / 2);
  $("radius").oninput = () => setRadius(Number($("radius").value));
  $("hardness").oninput = () => { state.hardness = Number($("hardness").value) / 100; $("hardness-value").textContent = state.hardness.toFixed(2); };
  $("undo").onclick = undo; $("redo").onclick = redo;
  $("compare").onchange = () => { state.compare = $("compare").value; schedule(); };
  $("split").oninput = () => { state.split = Number($("split").value) / 100; schedule(); };
  $("overlay").onchange = () => { state.overlay = $("overlay").value; loadOverlay(); };
  $("opacity").oninput = () => { state.opacity = Number($("opacity").value) / 100; schedule(); };
  $("save").onclick = () => save($("save-name").value);
  new ResizeObserver(resize).observe(canvas);
  resize();
  fit();
  if (info.frames.length) {
    const middle = Math.min(info.frames.length - 1, Math.floor(info.frames.length / 2));
    state.source = middle;
    firstPaint.then(() => { if (state.source === middle) setSource(middle); });
  }
  status(`${info.cols} x ${info.rows} ${info.dtype}, ${info.frames.length} frames. ` +
    "Drag to pan, wheel to zoom; pick a frame and paint (B), erase (E), pick by click (P).");
}

window.__viewer = {
  state, render, fit, zoomTo, zoomAt, clientPoint, undo, redo, save, setSource, setTool,
  setRadius, get firstPaintMs() { return firstPaintMs; }, get lastRenderMs() { return lastRenderMs; },
  get renderCount() { return renderCount; },
  get missingTiles() { let n = 0; for (const v of tiles.values()) if (v === "loading") n++; return n; },
  ready: start(),
};

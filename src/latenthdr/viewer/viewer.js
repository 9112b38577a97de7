// The page of `latenthdr view`: controls, file switcher, histogram, pixel read-out and metadata panels around
// the WebGL renderer (render.js). Values read out are the file's linear values (1.0 = EV-0 clipping level).

import { FALSE_COLOUR, FALSE_COLOUR_LOWEST_STOP, LUMA, MIDDLE_GREY, OPERATOR_NAMES, Renderer,
         lookAroundAngles } from "/render.js";

const $ = (id) => document.getElementById(id);
const CACHED_FILES = 4;  // decoded images kept for quick switching

const state = {
  file: 0, ev: 0, autoEv: true, operator: "aces", falseColour: false, lookAround: false,
  yawDeg: 0, pitchDeg: 0, fovDeg: 90, pan: [0, 0], zoom: 1, fitted: true,
};
let files = [], fovRange = [5, 170], renderer = null, current = null, cursor = null, drawPending = false;
const cache = new Map();  // file index -> {meta, image}

// ------------------------------------------------------------------------------------------- loading
function halfToFloat(h) {
  const exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff, sign = h & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${response.statusText}`);
  return response;
}

async function loadFile(index) {
  if (cache.has(index)) return cache.get(index);
  const [meta, response] = await Promise.all([
    fetchOk(`/api/files/${index}/meta`).then((r) => r.json()),
    fetchOk(`/api/files/${index}/pixels?max=${renderer.maxTextureSize}`),
  ]);
  const buffer = await response.arrayBuffer();
  const dtype = response.headers.get("X-Dtype");
  const image = {
    width: Number(response.headers.get("X-Width")), height: Number(response.headers.get("X-Height")),
    downsample: Number(response.headers.get("X-Downsample")), dtype,
    data: dtype === "float16" ? new Uint16Array(buffer) : new Float32Array(buffer),  // little-endian, as sent
  };
  image.value = (col, row) => {  // linear RGB of a stored pixel
    const i = (row * image.width + col) * 3, d = image.data;
    return dtype === "float16" ? [halfToFloat(d[i]), halfToFloat(d[i + 1]), halfToFloat(d[i + 2])]
                               : [d[i], d[i + 1], d[i + 2]];
  };
  const entry = { meta, image };
  cache.set(index, entry);
  if (cache.size > CACHED_FILES) cache.delete(cache.keys().next().value);
  return entry;
}

async function showFile(index) {
  message("loading " + files[index].name + " ...");
  const entry = await loadFile(index);
  state.file = index;
  current = entry;
  renderer.setImage(entry.image);
  if (state.autoEv) state.ev = entry.meta.stats.auto_ev;
  if (!entry.meta.panorama) state.lookAround = false;
  state.fitted = true;
  fit();
  showMeta(entry);
  syncControls();
  message(null);
  draw();
}

// ---------------------------------------------------------------------------------------------- drawing
function view() {
  return { ...state, whiteLum: current ? current.meta.stats.luminance_max : 1 };  // Reinhard's L_white: the peak
}

function draw() {
  drawPending = false;
  if (!current) return;
  resizeCanvas();
  if (state.fitted) fit();
  renderer.draw(view());
  showPixel();  // the value under a still cursor changes with the view; it redraws the histogram too
}

function scheduleDraw() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(draw);
  }
}

function resizeCanvas() {
  const canvas = $("canvas"), dpr = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * dpr)), height = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
}

function fit() {
  if (!current) return;
  const canvas = $("canvas"), { width, height } = current.image;
  state.zoom = Math.min(canvas.width / width, canvas.height / height);
  state.pan = [(canvas.width - width * state.zoom) / 2, (canvas.height - height * state.zoom) / 2];
}

// ------------------------------------------------------------------------------------------- read-out
// The stored pixel under canvas point (x, y) (device pixels, top-down), or null outside the image.
function pixelAt(x, y) {
  if (!current) return null;
  const { width, height } = current.image, canvas = $("canvas");
  let col, row;
  if (state.lookAround) {
    const [yaw, elev] = lookAroundAngles(state, x, y, canvas.width, canvas.height);
    col = Math.floor(((yaw + Math.PI) / (2 * Math.PI)) * width) % width;
    row = Math.max(0, Math.min(height - 1, Math.floor(((Math.PI / 2 - elev) / Math.PI) * height)));
  } else {
    col = Math.floor((x - state.pan[0]) / state.zoom);
    row = Math.floor((y - state.pan[1]) / state.zoom);
    if (col < 0 || row < 0 || col >= width || row >= height) return null;
  }
  const rgb = current.image.value(col, row), L = rgb[0] * LUMA[0] + rgb[1] * LUMA[1] + rgb[2] * LUMA[2];
  const f = current.image.downsample;
  const direction = current.meta.panorama ? [180 * ((col + 0.5) / width * 2 - 1), 90 * (1 - (row + 0.5) / height * 2)] : null;
  return { col: col * f, row: row * f, rgb, L, ev: L > 0 ? Math.log2(L) : -Infinity, direction };
}

function showPixel() {
  const p = cursor && pixelAt(cursor[0], cursor[1]);
  const fmt = (v) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : v.toPrecision(4));
  $("px-xy").textContent = p ? `${p.col}, ${p.row}` + (current.image.downsample > 1 ? ` (1/${current.image.downsample} copy)` : "") : "-";
  $("px-dir").textContent = p && p.direction ? `yaw ${p.direction[0].toFixed(1)}\u00b0, elevation ${p.direction[1].toFixed(1)}\u00b0` : "-";
  $("px-rgb").textContent = p ? p.rgb.map(fmt).join("  ") : "-";
  $("px-lum").textContent = p ? fmt(p.L) : "-";
  $("px-ev").textContent = p ? (Number.isFinite(p.ev) ? `${p.ev >= 0 ? "+" : ""}${p.ev.toFixed(2)}` : "black") : "-";
  $("px-shown").textContent = p && p.L > 0 ? `${(Math.log2((p.L * 2 ** state.ev) / MIDDLE_GREY)).toFixed(2)} stops` : "-";
  drawHistogram(p);
}

// ------------------------------------------------------------------------------------------- histogram
function drawHistogram(pixel = null) {
  const canvas = $("histogram"), ctx = canvas.getContext("2d"), h = current && current.meta.stats.histogram;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(canvas.clientWidth * dpr);
  canvas.height = Math.round(canvas.clientHeight * dpr);
  const W = canvas.width, H = canvas.height, axis = 16 * dpr;
  ctx.clearRect(0, 0, W, H);
  if (!h || !h.counts.length) return;
  const top = h.log2_lo + h.counts.length * h.bin_stops;  // the axis also spans what this exposure shows
  const lo = Math.max(Math.min(h.log2_lo, -state.ev - 8), h.log2_lo - 8), hi = Math.min(Math.max(top, -state.ev + 0.5), top + 8);
  const x = (s) => ((s - lo) / (hi - lo)) * W;
  // the stops the display shows at this exposure: from white (L 2^EV = 1) down 8 stops
  ctx.fillStyle = "rgba(255, 255, 255, 0.10)";
  ctx.fillRect(x(-state.ev - 8), 0, x(-state.ev) - x(-state.ev - 8), H - axis);
  const peak = Math.max(...h.counts);
  ctx.fillStyle = "#8fb3d9";
  h.counts.forEach((n, k) => {
    const bar = Math.sqrt(n / peak) * (H - axis - 2);
    ctx.fillRect(x(h.log2_lo + k * h.bin_stops), H - axis - bar, Math.max(1, x(h.bin_stops) - x(0) - 0.5), bar);
  });
  const mark = (s, colour) => { ctx.fillStyle = colour; ctx.fillRect(x(s) - dpr / 2, 0, dpr, H - axis); };
  mark(Math.log2(MIDDLE_GREY) - state.ev, "#e0c050");  // shown as 18% grey
  mark(-state.ev, "#ffffff");                          // shown as white
  if (pixel && Number.isFinite(pixel.ev)) mark(pixel.ev, "#ff5050");
  ctx.fillStyle = "#aaa";
  ctx.font = `${10 * dpr}px sans-serif`;
  const step = hi - lo > 24 ? 4 : 2;
  for (let s = Math.ceil(lo / step) * step; s <= hi; s += step) ctx.fillText(`${s}`, x(s) - 4 * dpr, H - 4 * dpr);
}

// ------------------------------------------------------------------------------------------- panels
function showMeta({ meta, image }) {
  const s = meta.stats, stops = s.luminance_min_positive ? Math.log2(s.luminance_max / s.luminance_min_positive) : 0;
  const rows = [
    ["size", `${meta.width} x ${meta.height}` + (image.downsample > 1 ? ` (shown 1/${image.downsample})` : "")],
    ["sent as", `${image.dtype} RGB`], ["panorama", meta.panorama ? "2:1 equirectangular" : "no"],
    ["luminance", `min ${s.luminance_min.toPrecision(3)}, mean ${s.luminance_mean.toPrecision(3)}, max ${s.luminance_max.toPrecision(4)}`],
    ["range", `${stops.toFixed(1)} stops (darkest non-zero to peak)`], ["auto exposure", `${s.auto_ev.toFixed(2)} EV`],
  ];
  if (meta.negative_clamped) rows.push(["negatives", `${meta.negative_clamped} values < 0 shown as 0`]);
  $("info").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  $("original").href = `/files/${state.file}/original`;
  $("original").download = meta.name;
  $("sheet-section").hidden = !meta.bracket_sheet;
  if (meta.bracket_sheet) {
    $("sheet").src = `/files/${state.file}/bracket.png`;
    $("sheet-link").href = $("sheet").src;
  }
  $("sidecar-name").textContent = meta.sidecar_name || "none";
  $("sidecar").textContent = meta.sidecar_error || (meta.sidecar ? JSON.stringify(meta.sidecar, null, 2) : "no sidecar JSON beside the file");
  $("metadata").textContent = Object.keys(meta.latenthdr_metadata).length ? JSON.stringify(meta.latenthdr_metadata, null, 2) : "none";
  $("header").textContent = JSON.stringify(meta.header, null, 2);
}

function el(tag, text) {
  const e = document.createElement(tag);
  e.textContent = text;
  return e;
}

function message(text) {
  $("message").hidden = !text;
  $("message").textContent = text || "";
}

// ------------------------------------------------------------------------------------------- controls
function syncControls() {
  $("file").value = String(state.file);
  $("ev").value = String(state.ev);
  $("ev-value").textContent = `${state.ev >= 0 ? "+" : ""}${state.ev.toFixed(2)} EV` + (state.autoEv ? " (auto)" : "");
  $("operator").value = state.operator;
  $("false-colour").checked = state.falseColour;
  $("legend").hidden = !state.falseColour;
  const panorama = Boolean(current && current.meta.panorama);
  $("look-around").disabled = !panorama;
  $("look-around").checked = state.lookAround;
  $("look-around-label").title = panorama ? "" : "look-around needs a 2:1 equirectangular panorama";
  $("camera").hidden = !state.lookAround;
  for (const [id, key] of [["yaw", "yawDeg"], ["pitch", "pitchDeg"], ["fov", "fovDeg"]]) {
    $(id).value = String(state[key]);
    $(`${id}-value`).textContent = `${state[key].toFixed(1)}\u00b0`;
  }
}

// Apply a change of state (the controls, the keys and the test hook all come here); returns a promise.
async function apply(changes) {
  if ("ev" in changes) changes = { autoEv: false, ...changes };
  if (changes.autoEv && current) changes = { ...changes, ev: current.meta.stats.auto_ev };
  if ("yawDeg" in changes) changes.yawDeg = 180 - ((((180 - changes.yawDeg) % 360) + 360) % 360);
  if ("pitchDeg" in changes) changes.pitchDeg = Math.max(-90, Math.min(90, changes.pitchDeg));
  if ("fovDeg" in changes) changes.fovDeg = Math.max(fovRange[0], Math.min(fovRange[1], changes.fovDeg));
  const { file, ...rest } = changes;
  if (file !== undefined && file !== state.file) await showFile(file);  // first: the rest applies to the new file
  Object.assign(state, rest);
  if (state.lookAround && current && !current.meta.panorama) state.lookAround = false;
  syncControls();
  showPixel();
  scheduleDraw();
}

function bindControls() {
  $("file").addEventListener("change", (e) => apply({ file: Number(e.target.value) }));
  $("ev").addEventListener("input", (e) => apply({ ev: Number(e.target.value) }));
  $("auto-ev").addEventListener("click", () => apply({ autoEv: true }));
  $("zero-ev").addEventListener("click", () => apply({ ev: 0 }));
  $("operator").addEventListener("change", (e) => apply({ operator: e.target.value }));
  $("false-colour").addEventListener("change", (e) => apply({ falseColour: e.target.checked }));
  $("look-around").addEventListener("change", (e) => apply({ lookAround: e.target.checked }));
  for (const [id, key] of [["yaw", "yawDeg"], ["pitch", "pitchDeg"], ["fov", "fovDeg"]]) {
    $(id).addEventListener("input", (e) => apply({ [key]: Number(e.target.value) }));
  }
  document.addEventListener("keydown", onKey);
  bindPointer($("canvas"));
  new ResizeObserver(scheduleDraw).observe($("canvas"));
}

function onKey(e) {
  if (e.target instanceof HTMLInputElement && e.target.type !== "range" && e.target.type !== "checkbox") return;
  const keys = {
    "]": () => apply({ ev: state.ev + 0.5 }), "[": () => apply({ ev: state.ev - 0.5 }),
    a: () => apply({ autoEv: true }), f: () => apply({ falseColour: !state.falseColour }),
    l: () => apply({ lookAround: !state.lookAround }),
    n: () => apply({ file: (state.file + 1) % files.length }),
    p: () => apply({ file: (state.file + files.length - 1) % files.length }),
    0: () => apply({ fitted: true }),
  };
  if (keys[e.key]) { keys[e.key](); e.preventDefault(); }
}

function bindPointer(canvas) {
  let drag = null;
  const device = (e) => { const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
                          return [(e.clientX - r.left) * dpr, (e.clientY - r.top) * dpr]; };
  canvas.addEventListener("pointerdown", (e) => { drag = device(e); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointermove", (e) => {
    const p = device(e);
    cursor = p;
    if (drag) {
      const [dx, dy] = [p[0] - drag[0], p[1] - drag[1]];
      drag = p;
      if (state.lookAround) {  // the content follows the pointer
        const degPerPixel = state.fovDeg / canvas.width;
        apply({ yawDeg: state.yawDeg - dx * degPerPixel, pitchDeg: state.pitchDeg + dy * degPerPixel });
      } else {
        apply({ pan: [state.pan[0] + dx, state.pan[1] + dy], fitted: false });
      }
    } else {
      showPixel();
    }
  });
  canvas.addEventListener("pointerleave", () => { cursor = null; showPixel(); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const factor = Math.pow(1.0015, -e.deltaY);
    if (state.lookAround) return apply({ fovDeg: state.fovDeg / factor });
    const [x, y] = device(e);  // zoom about the pointer
    apply({ zoom: state.zoom * factor, pan: [x - (x - state.pan[0]) * factor, y - (y - state.pan[1]) * factor],
            fitted: false });
  }, { passive: false });
  canvas.addEventListener("dblclick", () => apply({ fitted: true }));
}

function buildStaticParts(operators) {
  $("operator").replaceChildren(...operators.map((name) => {
    const option = el("option", OPERATOR_NAMES[name] || name);
    option.value = name;
    return option;
  }));
  $("file").replaceChildren(...files.map((f) => {
    const option = el("option", f.name + (f.panorama ? "  (panorama)" : ""));
    option.value = String(f.index);
    option.title = f.path;
    return option;
  }));
  $("file").disabled = files.length < 2;
  $("legend").replaceChildren(...FALSE_COLOUR.map((rgb, k) => {
    const stop = FALSE_COLOUR_LOWEST_STOP + k, swatch = el("span", "");
    swatch.style.background = `rgb(${rgb.map((c) => Math.round(c * 255)).join(",")})`;
    const label = k === 0 ? `\u2264${stop}` : k === FALSE_COLOUR.length - 1 ? `\u2265+${stop}` : `${stop > 0 ? "+" : ""}${stop}`;
    const item = el("span", label);
    item.className = "band";
    item.prepend(swatch);
    return item;
  }));
  $("fov").min = String(fovRange[0]);
  $("fov").max = String(fovRange[1]);
}

// ------------------------------------------------------------------------------------------- start
async function start() {
  try {
    renderer = new Renderer($("canvas"));
  } catch (error) {
    message(error.message);
    throw error;
  }
  const info = await fetchOk("/api/state").then((r) => r.json());
  files = info.files;
  fovRange = info.settings.fov_range_deg;
  buildStaticParts(info.operators);
  const s = info.settings;
  Object.assign(state, { operator: s.operator, falseColour: s.false_colour, lookAround: s.look_around,
                         yawDeg: s.yaw_deg, pitchDeg: s.pitch_deg, fovDeg: s.fov_deg,
                         autoEv: s.exposure_ev === null, ev: s.exposure_ev ?? 0 });
  bindControls();
  await showFile(0);
}

// A small hook for tests and scripts: set the view, draw at once, and read back what the canvas shows.
const ready = start();
window.latenthdrViewer = {
  ready,
  get state() { return JSON.parse(JSON.stringify(state)); },
  set: async (changes) => { await apply(changes); draw(); return window.latenthdrViewer.state; },
  canvasSize: () => [$("canvas").width, $("canvas").height],
  pixel: (x, y) => { draw(); return renderer.readPixel(x, y); },  // displayed RGBA codes, top-down canvas pixel
  pixels: (points) => { draw(); return points.map(([x, y]) => renderer.readPixel(x, y)); },
  valueAt: (x, y) => pixelAt(x, y),                                 // the file's linear value there
};

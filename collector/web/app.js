// The collector's log explorer: one module, no framework, no build step.
// It talks only to this origin's public API (/logs, /stats, /fields,
// /logs/{id}/context, /tail, /health, /metrics) and keeps every part of the
// view in the URL. Record text is only ever put in the page as text nodes.

const LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const PAGE = 500; // records per /logs page
const MAX_ROWS = 10000; // records the list holds; live mode drops the oldest beyond it
const FACET_FIELDS = ["level", "host", "service"];
const FACET_TOP = 8;
const FACET_MORE = 50;
const PARAM_FIELDS = new Set(["host", "service", "level", "facility"]);
const REFRESH_MS = 5000; // histogram, facets and health in live mode
const DOWNLOAD_MAX = 200000;
const OVERSCAN = 12;
const TOKEN_KEY = "collector.token";

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
};
const fmtInt = (n) => Number(n).toLocaleString("en-US");

// --- the view's state: exactly what the URL holds ------------------------------

const state = {
  query: "", start: "-1h", end: "", filters: [], facetFields: [],
  live: false, wrap: false, tz: "utc", open: null,
};

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.query = p.get("query") || "";
  state.start = p.has("start") ? p.get("start") : "-1h";
  state.end = p.get("end") || "";
  state.filters = p.getAll("f").map(parseFilter).filter(Boolean);
  state.facetFields = p.getAll("facet");
  state.live = p.get("live") === "1";
  state.wrap = p.get("wrap") === "1";
  state.tz = p.get("tz") === "local" ? "local" : "utc";
  state.open = p.get("open");
}

function writeUrl(push) {
  const p = new URLSearchParams();
  if (state.query) p.set("query", state.query);
  if (state.start !== "-1h") p.set("start", state.start);
  if (state.end) p.set("end", state.end);
  for (const f of state.filters) p.append("f", filterText(f));
  for (const f of state.facetFields) p.append("facet", f);
  if (state.live) p.set("live", "1");
  if (state.wrap) p.set("wrap", "1");
  if (state.tz === "local") p.set("tz", "local");
  if (state.open) p.set("open", state.open);
  const url = `${location.pathname}${p.toString() ? "?" + p : ""}`;
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

// A facet filter: {field, value, neg}; in the URL `host:web-1` or `-host:web-1`.
function parseFilter(text) {
  const neg = text.startsWith("-");
  const body = neg ? text.slice(1) : text;
  const i = body.indexOf(":");
  if (i <= 0) return null;
  return { field: body.slice(0, i), value: body.slice(i + 1), neg };
}
const filterText = (f) => `${f.neg ? "-" : ""}${f.field}:${f.value}`;

function quoteValue(v) {
  if (/^[^\s"(),]+$/.test(v)) return v;
  return `"${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

// --- time -------------------------------------------------------------------------

let clockSkewMs = 0; // server clock minus ours, from the Date header when off by > 2 s
const serverNow = () => Date.now() + clockSkewMs;
const UNITS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000 };

// The forms `start`/`end` take -> milliseconds, or null when we cannot tell
// (the server's parser stays the judge of what it accepts).
function timeMs(text) {
  const t = (text || "").trim();
  if (!t) return null;
  if (t === "now") return serverNow();
  let m = /^-(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/.exec(t);
  if (m) return serverNow() - Number(m[1]) * UNITS[m[2] || "s"];
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  m = /^(\d{4}-\d\d-\d\d)(?:[Tt ](\d\d:\d\d(?::\d\d)?)(?:[.,](\d+))?)?([Zz]|[+-]\d\d:?\d\d)?$/.exec(t);
  if (!m) return null;
  const frac = m[3] ? `.${m[3].slice(0, 3).padEnd(3, "0")}` : "";
  let zone = m[4] || "Z";
  if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const ms = Date.parse(`${m[1]}T${m[2] || "00:00:00"}${frac}${zone}`);
  return Number.isNaN(ms) ? null : ms;
}

const isRelative = (t) => t === "now" || /^-\d/.test((t || "").trim()) && !/^-?\d+(\.\d+)?$/.test(t.trim());
const iso = (ms) => new Date(ms).toISOString();

function apiTime(text) {
  const t = (text || "").trim();
  if (!t || t === "now") return null;
  if (isRelative(t)) return iso(timeMs(t));
  return t;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
function showTime(ts) {
  if (state.tz === "utc") return `${ts.slice(0, 10)} ${ts.slice(11, 23)}`;
  const d = new Date(ts);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// --- the API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
let token = localStorage.getItem(TOKEN_KEY) || "";
let searchLanguage = true; // false once the server refused `query=` as unknown

function headers() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function request(path, params, signal) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") qs.set(k, v);
  const url = qs.toString() ? `${path}?${qs}` : path;
  const res = await fetch(url, { headers: headers(), signal, cache: "no-store" });
  const date = Date.parse(res.headers.get("date") || "");
  if (!Number.isNaN(date)) {
    const skew = date - Date.now();
    clockSkewMs = Math.abs(skew) > 2000 ? skew : 0;
  }
  if (res.status === 401) {
    askToken();
    throw new ApiError(401, "authorization: this collector needs a token");
  }
  if (res.status === 403) throw new ApiError(403, "authorization: this token may not read");
  return res;
}

async function api(path, params, signal) {
  const res = await request(path, params, signal);
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = (await res.json()).error || msg; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  return res.json();
}

// The filter parameters of the current view, as /logs, /stats and /tail take them.
function filterParams() {
  const p = {};
  const start = apiTime(state.start);
  const end = apiTime(state.end);
  if (start) p.start = start;
  if (end) p.end = end;
  const terms = [];
  const any = {};
  for (const f of state.filters) {
    if (!f.neg && PARAM_FIELDS.has(f.field) && !f.value.includes("*")) {
      (any[f.field] = any[f.field] || []).push(f.value);
    } else {
      terms.push(`${f.neg ? "-" : ""}${f.field}:${quoteValue(f.value)}`);
    }
  }
  for (const [k, vs] of Object.entries(any)) p[k] = vs.join(",");
  if (searchLanguage) {
    const q = [state.query.trim(), ...terms].filter(Boolean).join(" ");
    if (q) p.query = q;
  } else if (state.query.trim()) {
    p.q = state.query.trim(); // substring of message: what an older server can do
  }
  return p;
}

// The parameters of the search on screen, fixed when it ran: a relative
// range resolved once, so every page, count and download of this search asks
// the same question (a cursor is only valid for the filters it was made for).
let view = { params: {}, from: null, to: null };

function freezeView() {
  const params = filterParams();
  const to = params.end ? timeMs(params.end) : serverNow();
  view = { params, from: params.start ? timeMs(params.start) : null, to };
}

function languageRefused(e) {
  if (searchLanguage && e instanceof ApiError && e.status === 400 && /^query: unknown parameter/.test(e.message)) {
    searchLanguage = false;
    return true;
  }
  return false;
}

// --- token --------------------------------------------------------------------------

function askToken() {
  const box = $("token-box");
  if (box.hidden) {
    box.hidden = false;
    $("token-error").textContent = token ? "that token was refused" : "";
    $("token").value = "";
    $("token").focus();
  }
  stopTail();
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  $("token-box").hidden = true;
  run();
  pollHealth();
});

// --- highlighting the searched words ------------------------------------------------

const WORD = "[\\p{L}\\p{N}]";
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

// The message terms of a search (not field terms, not negated ones) as one
// regular expression, or null.
function highlighter(query) {
  const parts = [];
  const re = /\s*(-?)(?:"((?:[^"\\]|\\.)*)"|\/((?:[^/\\]|\\.)+)\/|([^\s()]+))/gy;
  let m;
  const text = query || "";
  let skipNext = false; // after NOT: a negated term is not highlighted
  re.lastIndex = 0;
  while (re.lastIndex < text.length) {
    const start = re.lastIndex;
    if (/[()\s]/.test(text[start])) { re.lastIndex = start + 1; continue; }
    m = re.exec(text);
    if (!m) break;
    if (m[1] || skipNext) { skipNext = m[4] === "NOT"; continue; }
    if (m[4] === "NOT") { skipNext = true; continue; }
    if (m[2] !== undefined) {
      const phrase = m[2].replace(/\\(.)/g, "$1");
      if (phrase) parts.push(`(?<!${WORD})${escapeRe(phrase)}(?!${WORD})`);
    } else if (m[3] !== undefined) {
      try { new RegExp(m[3], "iu"); parts.push(`(?:${m[3]})`); } catch { /* the server says why */ }
    } else {
      const w = m[4];
      if (w === "OR" || w === "AND" || /[:<>=]/.test(w)) continue;
      const core = escapeRe(w.replace(/^\*+|\*+$/g, ""));
      if (!core) continue;
      const lead = w.startsWith("*") ? `${WORD}*` : `(?<!${WORD})`;
      const tail = w.endsWith("*") ? `${WORD}*` : `(?!${WORD})`;
      parts.push(`${lead}${core}${tail}`);
    }
  }
  if (!parts.length) return null;
  try { return new RegExp(parts.join("|"), "giu"); } catch { return null; }
}
let marker = null;

function appendMarked(parent, text) {
  if (!marker || !text) { parent.append(text); return; }
  marker.lastIndex = 0;
  let at = 0;
  let m;
  let n = 0;
  while ((m = marker.exec(text)) !== null && n < 200) {
    if (m[0] === "") { marker.lastIndex++; continue; }
    if (m.index > at) parent.append(text.slice(at, m.index));
    parent.append(el("mark", null, m[0]));
    at = m.index + m[0].length;
    n++;
  }
  if (at < text.length) parent.append(text.slice(at));
}

// --- the list: windowed, newest first ------------------------------------------------

const list = $("list");
const spacer = $("spacer");
let rows = []; // records, newest first
let seen = new Set(); // ids in `rows` (and pending): live mode never shows one twice
let nextCursor = null;
let loadingMore = false;
let rowHeight = 23;
const heights = new Map(); // wrap mode: measured height per id
let offsets = null; // wrap mode: offsets[i] = top of row i; null = recompute
const mounted = new Map(); // id -> element on screen
let renderQueued = false;

function measureRowHeight() {
  const probe = rowElement({ id: "probe", timestamp: "2000-01-01T00:00:00.000000Z", host: "h", service: "s", level: "info", message: "m" });
  probe.classList.add("probe");
  spacer.append(probe);
  rowHeight = probe.offsetHeight || 23;
  probe.remove();
}

function rowElement(rec) {
  const r = el("div", "row");
  r.setAttribute("data-testid", "row");
  r.setAttribute("role", "listitem");
  r.dataset.id = rec.id;
  const when = showTime(rec.timestamp);
  const t = el("span", "t");
  t.append(el("span", "d", when.slice(0, 11)), when.slice(11));
  r.append(t, el("span", "h", rec.host ?? "-"),
    el("span", "s", rec.service ?? "-"), el("span", `l lv-${rec.level}`, rec.level));
  const m = el("span", "m");
  let msg = rec.message ?? "";
  if (!state.wrap) {
    const nl = msg.indexOf("\n");
    if (nl >= 0) {
      const more = msg.split("\n").length - 1;
      appendMarked(m, msg.slice(0, Math.min(nl, 2000)));
      m.append(el("span", "nl", ` \u23ce +${more} line${more > 1 ? "s" : ""}`));
    } else appendMarked(m, msg.length > 2000 ? msg.slice(0, 2000) + "\u2026" : msg);
  } else appendMarked(m, msg.length > 20000 ? msg.slice(0, 20000) + "\u2026" : msg);
  r.append(m);
  if (rec.id === state.open) r.classList.add("open");
  return r;
}

function layout() {
  if (!state.wrap) return;
  offsets = new Float64Array(rows.length + 1);
  for (let i = 0; i < rows.length; i++) offsets[i + 1] = offsets[i] + (heights.get(rows[i].id) || rowHeight);
}
const topOf = (i) => (state.wrap ? offsets[i] : i * rowHeight);
const totalHeight = () => (state.wrap ? offsets[rows.length] : rows.length * rowHeight);

function firstVisible(y) {
  if (!state.wrap) return Math.max(0, Math.min(rows.length, Math.floor(y / rowHeight)));
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (offsets[mid + 1] <= y) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function scheduleRender() {
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; render(); });
  }
}

function render(pass = 0) {
  if (state.wrap && (offsets === null || offsets.length !== rows.length + 1)) layout();
  spacer.style.height = `${totalHeight()}px`;
  const top = list.scrollTop;
  const bottom = top + list.clientHeight;
  const a = Math.max(0, firstVisible(top) - OVERSCAN);
  let b = firstVisible(bottom) + OVERSCAN;
  b = Math.min(rows.length, b + 1);
  const want = new Set();
  for (let i = a; i < b; i++) want.add(rows[i].id);
  for (const [id, node] of mounted) if (!want.has(id)) { node.remove(); mounted.delete(id); }
  let changed = false;
  for (let i = a; i < b; i++) {
    const rec = rows[i];
    let node = mounted.get(rec.id);
    if (!node) {
      node = rowElement(rec);
      mounted.set(rec.id, node);
      spacer.append(node);
    }
    node.style.transform = `translateY(${topOf(i)}px)`;
    if (state.wrap) {
      const h = node.offsetHeight;
      if (h && h !== (heights.get(rec.id) || rowHeight)) { heights.set(rec.id, h); changed = true; }
    }
  }
  if (changed && pass < 3) { layout(); render(pass + 1); return; }
  list.dataset.rows = String(rows.length);
  if (nextCursor && !loadingMore && rows.length < MAX_ROWS && bottom > totalHeight() - list.clientHeight * 2) loadMore();
}

function remountAll() {
  for (const node of mounted.values()) node.remove();
  mounted.clear();
  offsets = null;
  heights.clear();
  scheduleRender();
}

list.addEventListener("scroll", () => { scheduleRender(); livePauseCheck(); }, { passive: true });
// Width changes (window, detail pane) change wrapped heights and the histogram.
let lastWidth = 0;
new ResizeObserver(() => {
  if (list.clientWidth === lastWidth) { scheduleRender(); return; }
  lastWidth = list.clientWidth;
  if (state.wrap) remountAll(); else scheduleRender();
  drawHistogram();
}).observe(list);
list.addEventListener("click", (ev) => {
  const r = ev.target.closest(".row");
  if (!r) return;
  const s = getSelection();
  if (s && !s.isCollapsed) return; // selecting text, not opening
  const rec = rows.find((x) => x.id === r.dataset.id);
  if (rec) openDetail(rec, true);
});

async function loadMore() {
  if (!nextCursor || loadingMore) return;
  loadingMore = true;
  const my = generation;
  try {
    const page = await api("/logs", { ...view.params, order: "desc", limit: PAGE, cursor: nextCursor }, ctrl.signal);
    if (my !== generation) return;
    for (const rec of page.logs) if (!seen.has(rec.id)) { rows.push(rec); seen.add(rec.id); }
    nextCursor = rows.length < MAX_ROWS ? page.next_cursor : null;
    offsets = null;
    updateStatus();
    scheduleRender();
  } catch (e) {
    if (e.name !== "AbortError") showError(e);
  } finally {
    loadingMore = false;
  }
}

// --- running a search ------------------------------------------------------------------

let generation = 0;
let ctrl = new AbortController();
let total = null;

function showError(e) {
  $("error").textContent = e && e.status !== 401 ? String(e.message || e) : "";
}

function updateStatus() {
  const shown = rows.length;
  let text = total === null ? `${fmtInt(shown)} shown` : `${fmtInt(total)} match${total === 1 ? "" : "es"}`;
  if (total !== null && shown < total) text += `, newest ${fmtInt(shown)} loaded`;
  if (!searchLanguage && (state.query || state.filters.some((f) => f.neg))) text += " (this server takes no search language: message substring only)";
  $("status").textContent = text;
}

async function run(opts = {}) {
  generation++;
  const my = generation;
  ctrl.abort();
  ctrl = new AbortController();
  const signal = ctrl.signal;
  stopTail();
  syncControls();
  marker = highlighter(state.query);
  showError(null);
  const t0 = performance.now();
  try {
    let page;
    freezeView();
    try {
      page = await api("/logs", { ...view.params, order: "desc", limit: PAGE }, signal);
    } catch (e) {
      if (!languageRefused(e)) throw e;
      freezeView();
      page = await api("/logs", { ...view.params, order: "desc", limit: PAGE }, signal);
    }
    if (my !== generation) return;
    rows = page.logs;
    seen = new Set(rows.map((r) => r.id));
    nextCursor = page.next_cursor;
    total = null;
    pending = [];
    pendingOverflow = false;
    uncounted = [];
    list.scrollTop = 0;
    remountAll();
    render();
    // For measurement: this search's time to rows, and the first since navigation.
    list.dataset.firstRowsMs = String(Math.round(performance.now() - t0));
    if (!list.dataset.firstRowsAt) list.dataset.firstRowsAt = String(Math.round(performance.now()));
    list.dataset.loads = String(Number(list.dataset.loads || 0) + 1);
    updateStatus();
    if (state.live) startTail(my, rows.length ? rows[0].timestamp : null);
    if (state.open && !opts.keepDetail) {
      const rec = rows.find((r) => r.id === state.open);
      if (rec) openDetail(rec, false); else fetchDetail(state.open);
    }
    // Live: the histogram counts up to the newest record shown, and the
    // stream adds the rest, so each record is counted once.
    const upTo = state.live ? (rows.length ? rows[0].timestamp : iso(serverNow())) : null;
    await Promise.all([
      retrying(my, signal, () => loadStats(my, signal, upTo)),
      retrying(my, signal, () => loadFacets(my, signal)),
    ]);
  } catch (e) {
    if (e.name !== "AbortError") showError(e);
  }
}

// A request that broke on the network (a proxy restarting, a dropped
// connection) is asked again, so the histogram and the facets are not left
// missing while the rows and the live stream carry on. Live records that come
// meanwhile wait in `uncounted`, so each is still counted once.
async function retrying(my, signal, fn) {
  for (let wait = 250, tries = 1; ; wait = Math.min(wait * 2, 5000), tries++) {
    try {
      return await fn();
    } catch (e) {
      const network = e.name === "TypeError" && /fetch|network/i.test(e.message);
      if (!network || tries >= 8 || signal.aborted || my !== generation) throw e;
    }
    await new Promise((r) => setTimeout(r, wait));
    if (signal.aborted || my !== generation) return;
  }
}

function syncControls() {
  document.title = state.query ? `${state.query} \u00b7 collector` : "collector";
  if (document.activeElement !== $("search")) $("search").value = state.query;
  $("range-start").value = state.start;
  $("range-end").value = state.end;
  const preset = [...$("preset").options].find((o) => o.value === state.start && !state.end);
  $("preset").value = preset ? preset.value : "custom";
  $("live").setAttribute("aria-pressed", String(state.live));
  $("wrap").setAttribute("aria-pressed", String(state.wrap));
  $("tz").textContent = state.tz === "utc" ? "UTC" : "Local";
  list.classList.toggle("wrap", state.wrap);
  renderChips();
}

function renderChips() {
  const box = $("chips");
  box.replaceChildren();
  state.filters.forEach((f, i) => {
    const c = el("span", f.neg ? "chip neg" : "chip", filterText(f));
    const x = el("button", null, "\u00d7");
    x.title = "Remove this filter";
    x.addEventListener("click", () => { state.filters.splice(i, 1); changed(); });
    c.append(x);
    box.append(c);
  });
}

// A change to what is searched: new URL entry, new search.
function changed() {
  state.open = null;
  closeDetailPane();
  writeUrl(true);
  run();
}

// --- histogram ------------------------------------------------------------------------

const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
let hist = null; // {from, to, step, buckets: [{t, count, by}]}

function pickStep(spanMs) {
  const want = spanMs / 1000 / 90;
  return STEPS.find((s) => s >= want) || Math.ceil(want / 86400) * 86400;
}

async function loadStats(my, signal, upTo = null) {
  const params = { ...view.params };
  if (upTo) params.end = upTo;
  let from = view.from;
  let to = view.to ?? serverNow();
  if (from === null) {
    // No start (or one only the server can read): a coarse first look, then the real span.
    const whole = await api("/stats", params, signal);
    if (my !== generation) return;
    total = whole.total;
    updateStatus();
    if (!whole.total) {
      hist = { from: to - 3600000, to, step: 60, buckets: [], gen: my };
      $("histogram").dataset.total = "0";
      countUncounted(upTo);
      drawHistogram();
      return;
    }
    const probe = await api("/logs", { ...params, order: "asc", limit: 1 }, signal);
    if (my !== generation) return;
    from = probe.logs.length ? Date.parse(probe.logs[0].timestamp) : to - 3600000;
  }
  if (to <= from) to = from + 1000;
  const step = pickStep(to - from);
  const stats = await api("/stats", { ...params, by: "level", step: `${step}s` }, signal);
  if (my !== generation) return;
  const buckets = stats.histogram.map((b) => ({ t: Date.parse(b.start), count: b.count, by: b.by_level || null }));
  if (buckets.length && !buckets[0].by && stats.total) {
    // An older server: one histogram per level present, stacked here.
    const present = Object.keys(stats.by.level || {}).filter((l) => LEVELS.includes(l));
    const per = await Promise.all(present.map((l) =>
      api("/stats", { ...params, level: l, step: `${step}s` }, signal).then((s) => [l, s.histogram])));
    if (my !== generation) return;
    const at = new Map(buckets.map((b) => [b.t, b]));
    for (const b of buckets) b.by = {};
    for (const [l, hs] of per) for (const h of hs) { const b = at.get(Date.parse(h.start)); if (b) b.by[l] = h.count; }
  }
  total = stats.total;
  hist = { from, to, step, buckets, gen: my };
  countUncounted(upTo);
  $("histogram").dataset.total = String(stats.total);
  updateStatus();
  drawHistogram();
  if (!$("histogram").dataset.readyAt) $("histogram").dataset.readyAt = String(Math.round(performance.now()));
}

const SVG = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
};

function drawHistogram() {
  const box = $("histogram");
  if (!hist) return;
  box.dataset.total = String(total ?? 0);
  const W = box.clientWidth || 600;
  const H = box.clientHeight || 96;
  const padL = 44, padB = 16, padT = 6;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `histogram: ${total ?? 0} records` });
  const span = hist.to - hist.from;
  const x = (t) => padL + ((t - hist.from) / span) * (W - padL - 4);
  const max = Math.max(1, ...hist.buckets.map((b) => b.count));
  const y = (n) => (H - padB) - (n / max) * (H - padB - padT);
  svg.append(svgEl("line", { x1: padL, x2: W - 4, y1: H - padB + 0.5, y2: H - padB + 0.5, class: "grid" }));
  svg.append(svgEl("line", { x1: padL, x2: W - 4, y1: padT + 0.5, y2: padT + 0.5, class: "grid" }));
  const maxLabel = svgEl("text", { x: padL - 4, y: padT + 8, "text-anchor": "end", class: "axis" });
  maxLabel.textContent = fmtInt(max);
  svg.append(maxLabel);
  const bw = Math.max(1, (hist.step * 1000 / span) * (W - padL - 4) - 1);
  for (const b of hist.buckets) {
    if (!b.count) continue;
    let bx = x(b.t);
    let w = bw;
    if (bx + w < padL || bx > W) continue;
    if (bx < padL) { w -= padL - bx; bx = padL; }
    const g = svgEl("g");
    const title = svgEl("title");
    title.textContent = `${showTime(iso(b.t))}: ${fmtInt(b.count)}`;
    g.append(title);
    let base = 0;
    const parts = b.by ? LEVELS.filter((l) => b.by[l]).map((l) => [l, b.by[l]]) : [["all", b.count]];
    for (const [l, n] of parts) {
      g.append(svgEl("rect", { x: bx.toFixed(1), width: w.toFixed(1), y: y(base + n).toFixed(1), height: Math.max(0.5, y(base) - y(base + n)).toFixed(1), class: `lv-${l}` }));
      base += n;
    }
    svg.append(g);
  }
  const ticks = Math.max(2, Math.floor((W - padL) / 150));
  for (let i = 0; i <= ticks; i++) {
    const t = hist.from + (span * i) / ticks;
    const label = svgEl("text", { x: x(t), y: H - 3, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle", class: "axis" });
    label.textContent = showTime(iso(t)).slice(span > 86400000 ? 5 : 11, 19);
    svg.append(label);
  }
  if (!total) {
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" });
    t.textContent = "no records in this range";
    svg.append(t);
  }
  box.replaceChildren(svg);
  box.histX = { x0: padL, x1: W - 4, from: hist.from, to: hist.to };
}

// Dragging across the histogram narrows the range to what was dragged over.
(() => {
  const box = $("histogram");
  let startX = null;
  let brush = null;
  const at = (ev) => ev.clientX - box.getBoundingClientRect().left;
  box.addEventListener("pointerdown", (ev) => {
    if (!box.histX || ev.button !== 0) return;
    startX = at(ev);
    box.setPointerCapture(ev.pointerId);
    brush = svgEl("rect", { class: "brush", y: 0, height: box.clientHeight, x: startX, width: 0 });
    box.querySelector("svg")?.append(brush);
  });
  box.addEventListener("pointermove", (ev) => {
    if (startX === null || !brush) return;
    const cur = at(ev);
    brush.setAttribute("x", Math.min(startX, cur));
    brush.setAttribute("width", Math.abs(cur - startX));
  });
  box.addEventListener("pointerup", (ev) => {
    if (startX === null) return;
    const a = Math.min(startX, at(ev));
    const b = Math.max(startX, at(ev));
    startX = null;
    brush?.remove();
    brush = null;
    const h = box.histX;
    if (b - a < 4 || !h) return;
    const t = (px) => h.from + ((Math.min(Math.max(px, h.x0), h.x1) - h.x0) / (h.x1 - h.x0)) * (h.to - h.from);
    state.start = iso(Math.floor(t(a)));
    state.end = iso(Math.ceil(t(b)));
    state.live = false;
    changed();
  });
})();

// Live records go into the histogram's buckets as they are shown.
let histQueued = false;
let uncounted = []; // live records shown before the histogram of their search came

// Live records that came while the histogram was counted up to `upTo`: those after it.
function countUncounted(upTo) {
  const late = upTo ? uncounted.filter((r) => r.timestamp > upTo) : [];
  uncounted = [];
  if (late.length) countLive(late);
}
function countLive(recs) {
  if (total === null || !hist || hist.gen !== generation) {
    uncounted.push(...recs);
    if (uncounted.length > MAX_ROWS) uncounted.splice(0, uncounted.length - MAX_ROWS);
    return;
  }
  total += recs.length;
  const step = hist.step * 1000;
  const byT = new Map(hist.buckets.map((b) => [b.t, b]));
  for (const r of recs) {
    const t = Math.floor(Date.parse(r.timestamp) / step) * step;
    let b = byT.get(t);
    if (!b) {
      b = { t, count: 0, by: {} };
      byT.set(t, b);
      hist.buckets.push(b);
    }
    b.count++;
    if (b.by) b.by[r.level] = (b.by[r.level] || 0) + 1;
    hist.to = Math.max(hist.to, t + step);
  }
  hist.to = Math.max(hist.to, serverNow());
  $("histogram").dataset.total = String(total);
  if (!histQueued) {
    histQueued = true;
    setTimeout(() => { histQueued = false; drawHistogram(); }, 250);
  }
}

// --- facets --------------------------------------------------------------------------

const facetLimit = {}; // field -> values shown
let fieldNames = null; // from /fields, on demand

async function loadFacets(my, signal) {
  const params = view.params;
  const fields = [...FACET_FIELDS, ...state.facetFields];
  const box = $("facets");
  const sections = [];
  let stats;
  let extra = {};
  try {
    stats = await api("/stats", { ...params, by: FACET_FIELDS.join(",") }, signal);
  } catch (e) {
    if (e.name === "AbortError") return;
    stats = { by: {} };
  }
  for (const f of state.facetFields) {
    try {
      extra[f] = (await api("/stats", { ...params, by: f }, signal)).by[f] || {};
    } catch (e) {
      if (e.name === "AbortError") return;
      extra[f] = e;
    }
  }
  if (my !== generation) return;
  for (const field of fields) {
    const values = field in extra ? extra[field] : stats.by[field] || {};
    const sec = el("section", "facet-field");
    const h = el("h3", null, field);
    if (state.facetFields.includes(field)) {
      const x = el("button", null, "\u00d7");
      x.title = "Remove this facet";
      x.addEventListener("click", () => {
        state.facetFields = state.facetFields.filter((v) => v !== field);
        writeUrl(false);
        loadFacets(generation, ctrl.signal);
      });
      h.append(x);
    }
    sec.append(h);
    if (values instanceof Error) {
      sec.append(el("div", "note", values.message));
      sections.push(sec);
      continue;
    }
    let entries = Object.entries(values).filter(([k]) => k !== "others");
    if (field === "level") entries.sort((p, q) => LEVELS.indexOf(p[0]) - LEVELS.indexOf(q[0]));
    const limit = facetLimit[field] || FACET_TOP;
    for (const [value, count] of entries.slice(0, limit)) sec.append(facetRow(field, value, count));
    if (!entries.length) sec.append(el("div", "note", "none"));
    if (entries.length > limit) {
      const more = el("button", "more", `${entries.length - limit} more\u2026`);
      more.addEventListener("click", () => { facetLimit[field] = FACET_MORE; loadFacets(generation, ctrl.signal); });
      sec.append(more);
    }
    sections.push(sec);
  }
  const add = el("section");
  const h = el("h3", null, "fields");
  const show = el("button", null, fieldNames ? "hide" : "show");
  show.title = "The field names present in the matches (fields.*, sd.*)";
  show.addEventListener("click", async () => {
    if (fieldNames) { fieldNames = null; loadFacets(generation, ctrl.signal); return; }
    try {
      fieldNames = (await api("/fields", params, ctrl.signal)).fields;
    } catch (e) {
      fieldNames = e.status === 404 ? "this server does not list fields" : String(e.message);
    }
    loadFacets(generation, ctrl.signal);
  });
  h.append(show);
  add.append(h);
  if (typeof fieldNames === "string") add.append(el("div", "note", fieldNames));
  else if (fieldNames) {
    const fl = el("div", "fieldlist");
    for (const f of fieldNames.filter((x) => !fields.includes(x.name)).slice(0, 100)) {
      const b = el("button", null, f.name);
      b.title = `${fmtInt(f.count)} records; show its top values`;
      b.dataset.field = f.name;
      b.addEventListener("click", () => {
        state.facetFields = [...state.facetFields, f.name];
        writeUrl(false);
        loadFacets(generation, ctrl.signal);
      });
      fl.append(b);
    }
    if (!fl.childElementCount) fl.append(el("span", "note", "no other fields"));
    add.append(fl);
  }
  sections.push(add);
  box.replaceChildren(...sections);
}

function facetRow(field, value, count) {
  const row = el("div", "facet");
  row.setAttribute("data-testid", "facet");
  row.dataset.field = field;
  row.dataset.value = value;
  row.dataset.count = String(count);
  const on = state.filters.some((f) => f.field === field && f.value === value && !f.neg);
  if (on) row.classList.add("on");
  const v = el("span", field === "level" ? `v lv-${value}` : "v", value === "-" ? "(none)" : value);
  v.title = value;
  const x = el("button", "x", "\u2212");
  x.setAttribute("data-testid", "facet-exclude");
  x.title = `Exclude ${field}:${value}`;
  x.setAttribute("aria-label", x.title);
  row.append(v, el("span", "n", fmtInt(count)), x);
  row.title = `Only ${field}:${value}`;
  const none = value === "-";
  row.addEventListener("click", (ev) => {
    const neg = ev.target.closest("[data-testid=facet-exclude]") !== null;
    const f = none ? { field, value: "*", neg: !neg } : { field, value, neg };
    const i = state.filters.findIndex((g) => g.field === f.field && g.value === f.value);
    if (i >= 0 && state.filters[i].neg === f.neg) state.filters.splice(i, 1); // a second click undoes
    else if (i >= 0) state.filters[i] = f;
    else state.filters.push(f);
    changed();
  });
  return row;
}

// --- the detail pane and context ---------------------------------------------------------

let openRec = null;

function closeDetailPane() {
  $("detail").hidden = true;
  openRec = null;
  for (const n of list.querySelectorAll(".row.open")) n.classList.remove("open");
}

function closeDetail() {
  if (!state.open && $("detail").hidden) return;
  state.open = null;
  closeDetailPane();
  writeUrl(false);
}

async function fetchDetail(id) {
  try {
    const { log } = await api(`/logs/${encodeURIComponent(id)}`, {}, ctrl.signal);
    openDetail(log, false);
  } catch (e) {
    if (e.name !== "AbortError") showError(e);
  }
}

function kv(dl, key, value, cls) {
  dl.append(el("dt", null, key));
  const dd = el("dd", cls);
  if (cls === "msg") appendMarked(dd, value); else dd.textContent = value;
  dl.append(dd);
}

function flatten(prefix, obj, out) {
  for (const [k, v] of Object.entries(obj || {})) {
    const name = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(name, v, out);
    else out.push([name, typeof v === "string" ? v : JSON.stringify(v)]);
  }
  return out;
}

function openDetail(rec, push) {
  openRec = rec;
  state.open = rec.id;
  if (push) writeUrl(false);
  const body = $("detail-body");
  const dl = el("dl", "kv");
  kv(dl, "time", `${showTime(rec.timestamp)}  (${rec.timestamp})`);
  kv(dl, "level", rec.level);
  for (const k of ["host", "service", "procid", "msgid", "facility", "format"]) kv(dl, k, rec[k] ?? "-");
  kv(dl, "received", rec.received_at);
  kv(dl, "id", rec.id);
  kv(dl, "message", rec.message ?? "", "msg");
  const parts = [dl];
  const sd = Object.entries(rec.structured_data || {});
  if (sd.length) {
    parts.push(el("h4", null, "structured data"));
    const sdl = el("dl", "kv");
    for (const [sid, params] of sd) for (const [k, v] of flatten("", params, [])) kv(sdl, `sd.${sid}.${k}`, v);
    parts.push(sdl);
  }
  const fields = flatten("", rec.fields, []);
  if (fields.length) {
    parts.push(el("h4", null, "fields"));
    const fdl = el("dl", "kv");
    for (const [k, v] of fields) kv(fdl, `fields.${k}`, v);
    parts.push(fdl);
  }
  body.replaceChildren(...parts);
  $("context-body").replaceChildren();
  $("detail").hidden = false;
  for (const n of list.querySelectorAll(".row.open")) n.classList.remove("open");
  mounted.get(rec.id)?.classList.add("open");
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = el("textarea");
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  const old = button.textContent;
  button.textContent = "Copied";
  button.classList.add("copied");
  setTimeout(() => { button.textContent = old; button.classList.remove("copied"); }, 1200);
}

$("copy-json").addEventListener("click", (ev) => { if (openRec) copyText(JSON.stringify(openRec, null, 2), ev.currentTarget); });
$("copy-line").addEventListener("click", (ev) => {
  if (openRec) copyText(`${openRec.timestamp} ${openRec.host ?? "-"} ${openRec.service ?? "-"} ${openRec.level}: ${openRec.message}`, ev.currentTarget);
});
$("close-detail").addEventListener("click", closeDetail);

async function showContext() {
  if (!openRec) return;
  const box = $("context-body");
  const anchorId = openRec.id;
  box.replaceChildren(el("div", "note", "loading context\u2026"));
  try {
    const ans = await api(`/logs/${encodeURIComponent(anchorId)}/context`,
      { before: 25, after: 25, scope: $("context-scope").value }, ctrl.signal);
    const lines = ans.logs.map((rec, i) => {
      const line = el("div", i === ans.anchor ? "ctx anchor" : "ctx");
      line.dataset.id = rec.id;
      line.append(el("span", "t", `${showTime(rec.timestamp)} `), el("span", null, `${rec.host ?? "-"} ${rec.service ?? "-"} `),
        el("span", `lv-${rec.level}`, `${rec.level} `));
      appendMarked(line, rec.message ?? "");
      line.addEventListener("click", () => { if (i !== ans.anchor) { openDetail(rec, true); } });
      return line;
    });
    box.replaceChildren(el("h4", null, `context: ${ans.anchor} before, ${ans.logs.length - ans.anchor - 1} after (${$("context-scope").value})`), ...lines);
    box.querySelector(".anchor")?.scrollIntoView({ block: "center" });
  } catch (e) {
    if (e.name === "AbortError") return;
    const msg = e.status === 404 && /no route/.test(e.message) ? "this server has no context route" : e.message;
    box.replaceChildren(el("div", "error", msg));
  }
}
$("context").addEventListener("click", showContext);

// --- live mode --------------------------------------------------------------------------

let tail = null; // {ctrl, gen}
let pending = []; // arrived, not yet shown (newest last)
let pendingOverflow = false; // more arrived while paused than the list holds
let cursorTs = null; // newest timestamp seen: where a dropped stream resumes
let flushQueued = false;
let received = 0;

function stopTail() {
  if (tail) { tail.ctrl.abort(); tail = null; }
  $("paused").hidden = true;
}

function startTail(my, newestTs) {
  cursorTs = newestTs;
  const c = new AbortController();
  tail = { ctrl: c, gen: my };
  // Records that arrived between the first page and this stream come first:
  // the stream starts at the newest shown (or at the range's start).
  const from = newestTs || apiTime(state.start) || iso(serverNow() - 2000);
  tailLoop(my, c.signal, from);
}

async function tailLoop(my, signal, from) {
  let backoff = 250;
  let start = from;
  while (!signal.aborted && my === generation && state.live) {
    try {
      const params = { ...view.params, start };
      delete params.end;
      let res;
      try {
        res = await request("/tail", params, signal);
        if (res.status === 400) {
          const err = new ApiError(400, (await res.json()).error);
          if (!languageRefused(err)) throw err;
          freezeView();
          continue;
        }
      } catch (e) {
        if (e.name === "AbortError" || e.status === 401 || e.status === 400 || e.status === 403) throw e;
        throw Object.assign(new Error("connection lost"), { retry: true });
      }
      if (!res.ok) throw new ApiError(res.status, `/tail: ${res.status}`);
      setLiveNote("");
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        backoff = 250;
        buf += dec.decode(value, { stream: true });
        const nl = buf.lastIndexOf("\n");
        if (nl < 0) continue;
        const lines = buf.slice(0, nl).split("\n");
        buf = buf.slice(nl + 1);
        for (const line of lines) {
          if (!line) continue; // keep-alive
          const rec = JSON.parse(line);
          if (seen.has(rec.id)) continue;
          seen.add(rec.id);
          received++;
          if (cursorTs === null || rec.timestamp > cursorTs) cursorTs = rec.timestamp;
          pending.push(rec);
        }
        if (pending.length > MAX_ROWS) {
          const drop = pending.splice(0, pending.length - MAX_ROWS);
          for (const r of drop) seen.delete(r.id);
          pendingOverflow = true;
        }
        queueFlush();
      }
    } catch (e) {
      if (signal.aborted || e.name === "AbortError") return;
      if (!e.retry && e.name !== "TypeError") { showError(e); return; }
    }
    if (signal.aborted || my !== generation) return;
    // The stream ended or broke: resume just before the newest seen; ids
    // already shown are skipped, so nothing is lost and nothing shows twice.
    if (cursorTs) start = iso(Date.parse(cursorTs) - 1000);
    setLiveNote("reconnecting\u2026");
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 5000);
  }
}

function setLiveNote(text) {
  const p = $("paused");
  if (text) { p.hidden = false; p.textContent = text; } else if (!paused()) p.hidden = true;
}

function paused() {
  if (list.scrollTop > 4) return true;
  const s = getSelection();
  return Boolean(s && !s.isCollapsed && s.rangeCount && (list.contains(s.anchorNode) || $("detail").contains(s.anchorNode)));
}

function queueFlush() {
  if (!flushQueued) {
    flushQueued = true;
    requestAnimationFrame(flush);
  }
}

// Once per frame: everything that arrived goes in at the top in one step.
function flush() {
  flushQueued = false;
  list.dataset.received = String(received);
  if (!pending.length) return;
  if (paused()) {
    const p = $("paused");
    p.hidden = false;
    p.textContent = `paused: ${fmtInt(pending.length)}${pendingOverflow ? "+" : ""} new (scroll to the top to resume)`;
    return;
  }
  $("paused").hidden = true;
  const fresh = pending.reverse();
  pending = [];
  if (pendingOverflow) {
    for (const r of rows) seen.delete(r.id);
    rows = fresh;
    nextCursor = null;
    pendingOverflow = false;
  } else {
    rows = fresh.concat(rows);
  }
  if (rows.length > MAX_ROWS) {
    for (const r of rows.slice(MAX_ROWS)) seen.delete(r.id);
    rows.length = MAX_ROWS;
    nextCursor = null;
  }
  countLive(fresh);
  offsets = null;
  render();
  updateStatus();
}

function livePauseCheck() {
  if (state.live && pending.length && !paused()) queueFlush();
}
document.addEventListener("selectionchange", livePauseCheck);
$("paused").addEventListener("click", () => { list.scrollTop = 0; getSelection()?.removeAllRanges(); livePauseCheck(); });

setInterval(() => {
  if (state.live && !document.hidden && tail) {
    loadFacets(generation, ctrl.signal).catch(() => {});
  }
}, REFRESH_MS);

// --- health strip ---------------------------------------------------------------------------

let lastCounts = null;

function sumMetric(text, name, match) {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== "{" && rest[0] !== " ") continue;
    if (match && !line.includes(match)) continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

async function pollHealth() {
  const box = $("health");
  try {
    const h = await api("/health", {});
    const items = [["records", fmtInt(h.records)]];
    let text = "";
    try {
      const res = await request("/metrics", {});
      if (res.ok) text = await res.text();
    } catch { /* a token without /metrics: the strip shows less */ }
    if (text) {
      const now = performance.now();
      const c = {
        received: sumMetric(text, "collector_messages_received_total"),
        dropped: sumMetric(text, "collector_messages_dropped_total"),
        limited: sumMetric(text, "collector_messages_dropped_total", 'reason="rate_limited"'),
        truncated: sumMetric(text, "collector_messages_truncated_total"),
        evicted: sumMetric(text, "collector_store_evicted_records_total"),
        t: now,
      };
      const rate = lastCounts ? (c.received - lastCounts.received) / ((now - lastCounts.t) / 1000) : null;
      items.push(["ingest", rate === null ? "\u2026" : `${fmtInt(Math.max(0, Math.round(rate)))}/s`]);
      items.push(["dropped", fmtInt(c.dropped), c.dropped > 0]);
      if (c.limited) items.push(["rate-limited", fmtInt(c.limited), true, 'service:collector "rate limit"']);
      items.push(["truncated", fmtInt(c.truncated)]);
      items.push(["evicted", fmtInt(c.evicted)]);
      lastCounts = c;
    }
    items.push(["up", duration(h.uptime_seconds)]);
    items.push(["ttl", duration(h.ttl_seconds)]);
    items.push(["listeners", (h.listeners || []).join(", ") || "none"]);
    box.replaceChildren(...items.map(([k, v, bad, search]) => {
      const s = el("span", bad ? "bad" : null, `${k} `);
      s.append(el("b", null, v));
      if (search) {
        // The collector notes each rate-limited sender in a record of its own.
        s.classList.add("link");
        s.title = `Show the collector's notes: ${search}`;
        s.addEventListener("click", () => { state.query = search; changed(); });
      }
      return s;
    }));
    box.dataset.records = String(h.records);
  } catch (e) {
    if (e.status !== 401) box.replaceChildren(el("span", "bad", `health: ${e.message}`));
  }
}

function duration(s) {
  s = Math.round(s);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
  return `${Math.round(s / 86400)}d`;
}

// --- download -------------------------------------------------------------------------------

$("download").addEventListener("click", async (ev) => {
  const button = ev.currentTarget;
  if (button.disabled) return;
  button.disabled = true;
  const chunks = [];
  let n = 0;
  let cursor = null;
  try {
    do {
      const page = await api("/logs", { ...view.params, order: "asc", limit: 10000, cursor }, ctrl.signal);
      chunks.push(page.logs.map((r) => JSON.stringify(r)).join("\n") + (page.logs.length ? "\n" : ""));
      n += page.count;
      cursor = page.next_cursor;
      $("status").textContent = `downloading: ${fmtInt(n)} records\u2026`;
    } while (cursor && n < DOWNLOAD_MAX);
    const a = el("a");
    a.href = URL.createObjectURL(new Blob(chunks, { type: "application/x-ndjson" }));
    a.download = `collector-${new Date().toISOString().replace(/[:.]/g, "-")}.ndjson`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    updateStatus();
    if (cursor) $("status").textContent += ` (download stopped at the oldest ${fmtInt(n)}: narrow the range for the rest)`;
  } catch (e) {
    if (e.name !== "AbortError") showError(e);
  } finally {
    button.disabled = false;
  }
});

// --- controls and keys --------------------------------------------------------------------

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.query = $("search").value;
  changed();
});
$("run").addEventListener("click", () => {
  state.query = $("search").value;
  state.start = $("range-start").value.trim();
  state.end = $("range-end").value.trim();
  changed();
});
$("preset").addEventListener("change", () => {
  const v = $("preset").value;
  if (v === "custom") { $("range-start").focus(); return; }
  state.start = v;
  state.end = "";
  changed();
});
for (const id of ["range-start", "range-end"]) {
  $(id).addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    state.start = $("range-start").value.trim();
    state.end = $("range-end").value.trim();
    if (state.end && state.end !== "now") state.live = false;
    changed();
  });
}
$("live").addEventListener("click", () => {
  state.live = !state.live;
  if (state.live && state.end) state.end = ""; // live follows now
  writeUrl(true);
  run({ keepDetail: true });
});
$("wrap").addEventListener("click", () => {
  state.wrap = !state.wrap;
  writeUrl(false);
  syncControls();
  remountAll();
});
$("tz").addEventListener("click", () => {
  state.tz = state.tz === "utc" ? "local" : "utc";
  writeUrl(false);
  syncControls();
  remountAll();
  drawHistogram();
  if (openRec) openDetail(openRec, false);
});

document.addEventListener("keydown", (ev) => {
  const typing = ev.target instanceof HTMLElement && ev.target.matches("input, textarea, select");
  if (ev.key === "/" && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
    ev.preventDefault();
    $("search").focus();
    $("search").select();
  } else if (ev.key === "Escape") {
    if (!$("detail").hidden) closeDetail();
    else if (typing) ev.target.blur();
  }
});

window.addEventListener("popstate", () => {
  readUrl();
  closeDetailPane();
  run();
});

// --- start ------------------------------------------------------------------------------------

readUrl();
measureRowHeight();
syncControls();
run();
pollHealth();
setInterval(() => { if (!document.hidden) pollHealth(); }, REFRESH_MS);

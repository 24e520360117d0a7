// exastor console: plain JavaScript, served by the server; no build step, nothing loaded from elsewhere.
"use strict";

let csrf = "";
let view = "overview";
let browse = { bucket: "", prefix: "" };
const samples = [];  // traffic samples, the newest last
const $ = (id) => document.getElementById(id);

function size(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
  let i = 0;
  let v = Number(n);
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (i ? v.toFixed(2) : String(Math.round(v))) + " " + units[i];
}

function when(ns) { return ns ? new Date(ns / 1e6).toLocaleString() : "never"; }

function show(el, text, value) {
  el.textContent = text;
  if (value !== undefined) el.dataset.value = String(value);
}

function message(text, isError) {
  const el = $("message");
  el.textContent = text || "";
  el.className = isError ? "message error" : "message";
}

async function api(method, path, body, headers) {
  const opts = { method, headers: Object.assign({}, headers || {}), credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-Exastor-CSRF"] = csrf;
  if (body !== undefined) {
    if (body instanceof Blob) { opts.body = body; } else {
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
  }
  const res = await fetch("/api" + path, opts);
  if (res.status === 401 && path !== "/login") { loggedOut(); throw new Error("log in first"); }
  const doc = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(doc.error || res.statusText);
  return doc;
}

function loggedOut() {
  csrf = "";
  $("app").classList.add("hidden");
  $("login").classList.remove("hidden");
}

function loggedIn(doc) {
  csrf = doc.csrf;
  $("login").classList.add("hidden");
  $("app").classList.remove("hidden");
  go(location.hash.slice(1) || "overview");
}

function go(name) {
  view = name;
  document.querySelectorAll(".view").forEach((s) => s.classList.toggle("hidden", s.id !== "view-" + name));
  document.querySelectorAll("header a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  refresh().catch((e) => message(e.message, true));
}

async function refresh() {
  if (!csrf) return;
  if (view === "overview" || view === "drives") await overview();
  if (view === "buckets") await buckets();
  if (view === "users") await users();
  if (view === "services") await services();
}

async function overview() {
  const o = await api("GET", "/overview");
  const st = o.stats;
  show($("ov-logical"), size(st.logical_bytes), st.logical_bytes);
  show($("ov-stored"), size(st.stored_bytes), st.stored_bytes);
  show($("ov-saved"), size(Math.max(0, st.logical_bytes - st.stored_bytes)), Math.max(0, st.logical_bytes - st.stored_bytes));
  show($("ov-ratio"), st.reduction.total.toFixed(2) + "x", st.reduction.total);
  const onDrives = o.drives.reduce((sum, d) => sum + d.used_bytes, 0);
  show($("ov-raw"), size(onDrives), onDrives);
  show($("ov-buckets"), st.buckets.toLocaleString(), st.buckets);
  show($("ov-objects"), st.objects.toLocaleString(), st.objects);
  const split = $("ov-split").tBodies[0];
  split.replaceChildren();
  for (const [name, value] of [["dedupe", st.reduction.dedupe], ["compression", st.reduction.compression],
    ["float transforms", st.reduction.float_transforms], ["similarity delta", st.reduction.similarity_delta],
    ["total", st.reduction.total]]) {
    const tr = split.insertRow();
    tr.insertCell().textContent = name;
    const v = tr.insertCell();
    v.className = "num";
    show(v, value.toFixed(2) + "x", value);
    v.dataset.factor = name;
    const bar = tr.insertCell();
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = Math.min(100, Math.log2(Math.max(1, value)) * 25 + 2) + "%";
    bar.appendChild(fill);
  }
  const r = o.reducer;
  show($("red-state"), r.paused ? "paused" : r.running ? "running a pass" : "active", r.paused ? "paused" : "active");
  show($("red-backlog"), size(r.backlog_bytes), r.backlog_bytes);
  show($("red-backlog-objects"), r.backlog_objects.toLocaleString(), r.backlog_objects);
  $("red-last").textContent = r.pass_ended ? "ended " + when(r.pass_ended) + ", " + size(r.pass_bytes) +
    " evaluated, " + size(r.pass_saved) + " saved" : "none yet";
  const tbody = $("drives").tBodies[0];
  tbody.replaceChildren();
  for (const d of o.drives) {
    const tr = tbody.insertRow();
    const fill = d.capacity_bytes ? (1 - d.free_bytes / d.capacity_bytes) : null;
    for (const [text, num] of [[d.id, false], [d.path, false], [d.state, false], [size(d.used_bytes), true],
      [size(d.free_bytes), true], [size(d.capacity_bytes), true], [fill === null ? "-" : (fill * 100).toFixed(1) + "%", true]]) {
      const td = tr.insertCell();
      td.textContent = text;
      if (num) td.className = "num";
    }
    tr.dataset.state = d.state;
  }
  const s = o.segments;
  $("segments").textContent = `segments: ${s.open} open (replicated), ${s.sealed} sealed, ${s.erasure_coded} erasure-coded; ` +
    `shards needing repair: ${o.shards_needing_repair}`;
}

async function buckets() {
  const rows = await api("GET", "/buckets");
  const tbody = $("buckets").tBodies[0];
  tbody.replaceChildren();
  for (const b of rows) {
    const tr = tbody.insertRow();
    const a = document.createElement("a");
    a.className = "link";
    a.textContent = b.name;
    a.dataset.bucket = b.name;
    a.addEventListener("click", () => { browse = { bucket: b.name, prefix: "" }; objects(); });
    tr.insertCell().appendChild(a);
    tr.insertCell().textContent = b.owner;
    const n = tr.insertCell(); n.className = "num"; n.textContent = b.objects.toLocaleString();
    const by = tr.insertCell(); by.className = "num"; by.textContent = size(b.bytes);
    tr.insertCell().textContent = b.quota_bytes === null && b.quota_objects === null ? "-" :
      [b.quota_bytes === null ? "" : size(b.quota_bytes), b.quota_objects === null ? "" : b.quota_objects + " objects"]
        .filter(Boolean).join(", ");
  }
  if (browse.bucket) await objects();
}

function objectUrl(key) {
  return "/api/buckets/" + encodeURIComponent(browse.bucket) + "/objects/" + encodeURIComponent(key);
}

async function objects() {
  const doc = await api("GET", "/buckets/" + encodeURIComponent(browse.bucket) + "/objects?prefix=" +
    encodeURIComponent(browse.prefix));
  $("browser").classList.remove("hidden");
  $("browse-bucket").textContent = browse.bucket;
  $("browse-prefix").textContent = "/" + browse.prefix;
  const tbody = $("objects").tBodies[0];
  tbody.replaceChildren();
  if (browse.prefix) {
    const up = tbody.insertRow().insertCell();
    const a = document.createElement("a");
    a.className = "link";
    a.textContent = "..";
    a.addEventListener("click", () => {
      const parts = browse.prefix.split("/").filter(Boolean);
      parts.pop();
      browse.prefix = parts.length ? parts.join("/") + "/" : "";
      objects();
    });
    up.appendChild(a);
  }
  for (const p of doc.prefixes) {
    const a = document.createElement("a");
    a.className = "link";
    a.textContent = p.slice(browse.prefix.length);
    a.addEventListener("click", () => { browse.prefix = p; objects(); });
    tbody.insertRow().insertCell().appendChild(a);
  }
  for (const o of doc.objects) {
    const tr = tbody.insertRow();
    tr.dataset.key = o.key;
    const link = document.createElement("a");
    link.href = objectUrl(o.key);
    link.download = o.key.split("/").pop();
    link.textContent = o.key.slice(browse.prefix.length);
    link.className = "download";
    tr.insertCell().appendChild(link);
    const sz = tr.insertCell(); sz.className = "num"; show(sz, size(o.size), o.size);
    tr.insertCell().textContent = when(o.modified_ns);
    const del = document.createElement("button");
    del.textContent = "Delete";
    del.addEventListener("click", async () => {
      try { await api("DELETE", objectUrl(o.key).slice(4)); message("deleted " + o.key); await objects(); }
      catch (e) { message(e.message, true); }
    });
    tr.insertCell().appendChild(del);
  }
}

async function users() {
  const rows = await api("GET", "/users");
  const tbody = $("users").tBodies[0];
  tbody.replaceChildren();
  for (const u of rows) {
    const tr = tbody.insertRow();
    tr.dataset.user = u.name;
    tr.insertCell().textContent = u.name;
    tr.insertCell().textContent = u.access_key;
    tr.insertCell().textContent = when(u.created_ns);
    const cell = tr.insertCell();
    if (u.name !== "admin") {
      const del = document.createElement("button");
      del.textContent = "Remove";
      del.addEventListener("click", async () => {
        try { await api("DELETE", "/users/" + encodeURIComponent(u.name)); message("removed " + u.name); await users(); }
        catch (e) { message(e.message, true); }
      });
      cell.appendChild(del);
    }
  }
}

async function services() {
  const doc = await api("GET", "/services");
  const tbody = $("services").tBodies[0];
  tbody.replaceChildren();
  const rows = Object.entries(doc.series).sort();
  for (const [name, value] of rows) {
    const tr = tbody.insertRow();
    tr.insertCell().textContent = name;
    const v = tr.insertCell();
    v.className = "num";
    v.textContent = name.endsWith("_timestamp_seconds") ? (value ? new Date(value * 1000).toLocaleString() : "never")
      : value.toLocaleString();
  }
}

// --- traffic charts: rates and percentiles between two samples of the server's totals ---------------
function quantile(q, before, after) {
  const les = Object.keys(after.latency_buckets).filter((le) => le !== "+Inf").map(Number).sort((a, b) => a - b);
  const total = after.latency_count - before.latency_count;
  if (total <= 0) return null;
  for (const le of les) {
    const key = Object.keys(after.latency_buckets).find((k) => Number(k) === le);
    const n = after.latency_buckets[key] - (before.latency_buckets[key] || 0);
    if (n >= q * total) return le * 1000;
  }
  return les.length ? les[les.length - 1] * 1000 : null;
}

function chart(canvas, series, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 36;
  ctx.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.values).filter((v) => v !== null);
  const max = Math.max(1e-9, ...all) * 1.1;
  ctx.strokeStyle = "#d8dee6";
  ctx.fillStyle = "#5b6878";
  ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = h - pad / 2 - (h - pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText((max * i / 4).toPrecision(3), 2, y + 4);
  }
  const colours = ["#1d64b8", "#e07b00", "#2b9a48", "#a03cc8"];
  series.forEach((s, k) => {
    ctx.strokeStyle = colours[k % colours.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let drawing = false;
    s.values.forEach((v, i) => {
      if (v === null) { drawing = false; return; }  // no requests in that interval: a gap, not a zero
      const x = pad + (w - pad - 4) * i / Math.max(1, s.values.length - 1);
      const y = h - pad / 2 - (h - pad) * v / max;
      if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      drawing = true;
      ctx.fillStyle = colours[k % colours.length];
      ctx.fillRect(x - 2, y - 2, 4, 4);
    });
    ctx.stroke();
    ctx.fillStyle = colours[k % colours.length];
    ctx.fillText(s.name + " " + unit, pad + 8 + k * 130, 12);
  });
}

async function sampleTraffic() {
  if (!csrf) return;
  const t = await api("GET", "/traffic");
  samples.push(t);
  if (samples.length > 90) samples.shift();
  if (view !== "traffic" || samples.length < 2) return;
  const pairs = samples.slice(1).map((s, i) => [samples[i], s]);
  const rate = (f) => pairs.map(([a, b]) => (f(b) - f(a)) / Math.max(1e-3, b.t - a.t));
  const apis = [...new Set(samples.flatMap((s) => Object.keys(s.requests)))];
  chart($("chart-rps"), apis.map((api) => ({ name: api, values: rate((s) => s.requests[api] || 0) })), "req/s");
  chart($("chart-bytes"), [{ name: "in", values: rate((s) => s.received / 1e6) },
    { name: "out", values: rate((s) => s.sent / 1e6) }], "MB/s");
  chart($("chart-latency"), [{ name: "p50", values: pairs.map(([a, b]) => quantile(0.5, a, b)) },
    { name: "p99", values: pairs.map(([a, b]) => quantile(0.99, a, b)) }], "ms");
}

function wire() {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      loggedIn(await api("POST", "/login", { access_key: $("login-access").value, secret_key: $("login-secret").value }));
    } catch (e) { $("login-error").textContent = e.message; }
  });
  $("logout").addEventListener("click", async () => { await api("POST", "/logout").catch(() => {}); loggedOut(); });
  document.querySelectorAll("header a").forEach((a) => a.addEventListener("click", () => go(a.dataset.view)));
  for (const action of ["run", "pause", "resume"]) {
    $("red-" + action).addEventListener("click", async () => {
      try { await api("POST", "/reducer/" + action); message("reducer: " + action + " requested"); await overview(); }
      catch (e) { message(e.message, true); }
    });
  }
  $("bucket-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("POST", "/buckets", { name: $("bucket-name").value }); message("created " + $("bucket-name").value); await buckets(); }
    catch (e) { message(e.message, true); }
  });
  $("upload-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const files = [...$("upload-file").files];
    try {
      for (const f of files) {
        await api("PUT", objectUrl(browse.prefix + f.name).slice(4), f, { "Content-Type": f.type || "application/octet-stream" });
      }
      message("uploaded " + files.map((f) => f.name).join(", "));
      $("upload-file").value = "";
      await buckets();
    } catch (e) { message(e.message, true); }
  });
  $("user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const u = await api("POST", "/users", { name: $("user-name").value });
      $("new-user").textContent = u.name;
      $("new-access").textContent = u.access_key;
      $("new-secret").textContent = u.secret_key;
      $("new-keys").classList.remove("hidden");
      $("user-name").value = "";
      await users();
    } catch (e) { message(e.message, true); }
  });
  window.addEventListener("hashchange", () => go(location.hash.slice(1) || "overview"));
  setInterval(() => refresh().catch(() => {}), 5000);
  setInterval(() => sampleTraffic().catch(() => {}), 2000);
}

async function start() {
  wire();
  try { loggedIn(await api("GET", "/session")); } catch (e) { loggedOut(); }
}

document.addEventListener("DOMContentLoaded", start);

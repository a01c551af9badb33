// mofang control-plane UI: plain JavaScript over the REST API (/api/v1). Every server string is
// put into the page with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "mofang.token";
const $ = (sel) => document.querySelector(sel);
let refreshTimer = null;
let logAbort = null;
let currentLog = null;

// A token passed as ?token=… (scripts print such a link) is stored, then removed from the URL.
(function bootstrapToken() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
})();

function token() { return localStorage.getItem(TOKEN_KEY); }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token() }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    if (response.status === 401) { showLogin(message); }
    throw new ApiError(response.status, message);
  }
  return response;
}

async function apiJson(path, options) { return (await api(path, options)).json(); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function badge(state) { return el("span", state, "badge " + state); }

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === undefined || c === null ? "" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m";
  if (s < 86400) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function when(ms) { return ms ? new Date(ms).toLocaleString() : ""; }

function duration(from, to) {
  if (!from) return "";
  const s = Math.round(((to || Date.now()) - from) / 1000);
  return s < 60 ? s + "s" : s < 3600 ? Math.floor(s / 60) + "m " + (s % 60) + "s" : Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function cores(millis) { return millis === null || millis === undefined ? "∞" : (millis / 1000).toFixed(millis % 1000 ? 2 : 0); }
function bytes(b) {
  if (b === null || b === undefined) return "∞";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + " " + units[i];
}
function count(n) { return n === null || n === undefined ? "∞" : String(n); }

function show(id) {
  for (const s of ["login", "jobs-view", "job-view", "queues-view"]) $("#" + s).hidden = s !== id;
  $("#nav-jobs").classList.toggle("active", id === "jobs-view" || id === "job-view");
  $("#nav-queues").classList.toggle("active", id === "queues-view");
}

function stopTimers() {
  if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
  if (logAbort) { logAbort.abort(); logAbort = null; }
  currentLog = null;
}

function showLogin(message) {
  stopTimers();
  localStorage.removeItem(TOKEN_KEY);
  $("#sign-out").hidden = true;
  $("#who").textContent = "";
  $("#login-error").textContent = message || "";
  show("login");
}

// ---------------------------------------------------------------- jobs list

function hashQuery() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : "");
}

async function renderJobs() {
  show("jobs-view");
  const q = hashQuery();
  $("#filter-state").value = q.get("state") || "";
  $("#filter-user").value = q.get("user") || "";
  $("#filter-queue").value = q.get("queue") || "";
  const load = async () => {
    const params = new URLSearchParams();
    for (const k of ["state", "user", "queue"]) if (q.get(k)) params.set(k, q.get(k));
    const data = await apiJson("/api/v1/jobs?" + params.toString());
    const body = $("#jobs-table tbody");
    body.replaceChildren();
    for (const j of data.jobs) {
      const tr = row([j.name, j.id, j.user, j.queue, badge(j.state), j.gang + " / " + j.replicas, j.restarts, ago(j.created_ms), j.message]);
      tr.dataset.jobId = j.id;
      tr.dataset.state = j.state;
      tr.lastChild.className = "message";
      tr.addEventListener("click", () => { location.hash = "#/jobs/" + encodeURIComponent(j.id); });
      body.appendChild(tr);
    }
    $("#jobs-empty").hidden = data.jobs.length > 0;
  };
  await load();
  refreshTimer = setInterval(() => load().catch(() => {}), 2000);
}

$("#filters").addEventListener("submit", (e) => {
  e.preventDefault();
  const params = new URLSearchParams();
  for (const [k, id] of [["state", "#filter-state"], ["user", "#filter-user"], ["queue", "#filter-queue"]]) {
    const v = $(id).value.trim();
    if (v) params.set(k, v);
  }
  const s = params.toString();
  location.hash = "#/jobs" + (s ? "?" + s : "");
});

// ---------------------------------------------------------------- one job

async function renderJob(id) {
  show("job-view");
  $("#job-error").textContent = "";
  $("#log").textContent = "";
  let first = true;
  const load = async () => {
    const j = await apiJson("/api/v1/jobs/" + encodeURIComponent(id));
    $("#job-name").textContent = j.name;
    const state = $("#job-state");
    state.textContent = j.state;
    state.className = "badge " + j.state;
    $("#job-message").textContent = j.message;
    const dl = $("#job-summary");
    dl.replaceChildren();
    for (const [k, v] of [["ID", j.id], ["User", j.user], ["Group", j.group], ["Queue", j.queue], ["Priority", j.priority],
      ["Gang", j.gang + " of " + j.replicas + " replicas"], ["Restarts", j.restarts + " (limit " + j.spec.backoff_limit + ")"],
      ["Created", when(j.created_ms)], ["Started", when(j.started_ms)], ["Finished", when(j.finished_ms)],
      ["Run time", duration(j.started_ms, j.finished_ms)]]) {
      dl.appendChild(el("dt", k));
      dl.appendChild(el("dd", v));
    }
    $("#cancel").disabled = ["Succeeded", "Failed", "Cancelled"].includes(j.state);
    const tasks = $("#tasks-table tbody");
    tasks.replaceChildren();
    for (const t of j.spec.tasks) {
      const r = t.resources || {};
      tasks.appendChild(row([t.role, t.replicas, t.command.concat(t.args || []).join(" "), r.cpu, r.memory, r.gpu, t.restart_policy]));
    }
    const reps = $("#replicas-table tbody");
    reps.replaceChildren();
    for (const r of j.replica_attempts) {
      const exit = r.signal !== null && r.signal !== undefined ? "signal " + r.signal : (r.exit_code ?? "");
      const u = r.usage || {};
      const tr = row([r.role + "-" + r.index, r.attempt, badge(r.state), r.pid, exit,
        u.user_cpu_ms !== undefined ? ((u.user_cpu_ms + u.system_cpu_ms) / 1000).toFixed(2) + " s" : "",
        u.max_rss_kib !== undefined ? bytes(u.max_rss_kib * 1024) : "", when(r.started_ms), when(r.finished_ms), r.message]);
      tr.dataset.replica = r.role + "-" + r.index;
      tr.dataset.state = r.state;
      reps.appendChild(tr);
    }
    const events = $("#events-table tbody");
    events.replaceChildren();
    for (const e of j.events) events.appendChild(row([e.kind, e.reason, e.count, ago(e.last_ms), e.message]));
    const conds = $("#conditions");
    conds.replaceChildren();
    for (const c of j.conditions) {
      const li = el("li");
      li.appendChild(badge(c.state));
      li.appendChild(el("span", " " + when(c.time_ms) + " — " + c.reason + ": " + c.message));
      conds.appendChild(li);
    }
    // The log picker lists every replica of the spec; keep the user's choice across refreshes.
    const picker = $("#log-replica");
    const keep = picker.value;
    picker.replaceChildren();
    for (const t of j.spec.tasks) for (let i = 0; i < t.replicas; i++) {
      const o = el("option", t.role + "-" + i);
      o.value = t.role + ":" + i;
      picker.appendChild(o);
    }
    if (keep) picker.value = keep;
    if (first) { first = false; followLog(j.id); }
    return j;
  };
  $("#cancel").onclick = async () => {
    if (!confirm("Cancel this job? Its processes get SIGTERM, then SIGKILL.")) return;
    try {
      await api("/api/v1/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST" });
      await load();
    } catch (e) { $("#job-error").textContent = e.message; }
  };
  $("#log-replica").onchange = () => followLog(id);
  try { await load(); } catch (e) { $("#job-error").textContent = e.message; return; }
  refreshTimer = setInterval(() => load().catch(() => {}), 2000);
}

// Streams the chosen replica's log (follow=true) into the panel; a new choice restarts it.
async function followLog(id) {
  const [role, index] = ($("#log-replica").value || ":0").split(":");
  const key = id + "/" + role + "/" + index;
  if (currentLog === key) return;
  if (logAbort) logAbort.abort();
  currentLog = key;
  const controller = new AbortController();
  logAbort = controller;
  const pre = $("#log");
  pre.textContent = "";
  const status = $("#log-status");
  status.textContent = "following…";
  const params = new URLSearchParams({ follow: "true", index: index || "0" });
  if (role) params.set("role", role);
  try {
    const response = await api("/api/v1/jobs/" + encodeURIComponent(id) + "/logs?" + params.toString(), { signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(document.createTextNode(decoder.decode(value, { stream: true })));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    status.textContent = "ended";
  } catch (e) {
    if (e.name !== "AbortError") status.textContent = e.message;
  }
}

// ---------------------------------------------------------------- queues

function meter(allocated, capability, guarantee, deserved, fmt) {
  const cell = el("div");
  const bar = el("div", null, "bar");
  const cap = capability === null || capability === undefined ? null : capability;
  const scale = cap || Math.max(allocated || 0, guarantee || 0, deserved || 0, 1);
  const fill = el("div", null, "fill");
  fill.style.width = Math.min(100, 100 * (allocated || 0) / scale) + "%";
  bar.appendChild(fill);
  if (guarantee) {
    const g = el("div", null, "guarantee");
    g.style.left = Math.min(100, 100 * guarantee / scale) + "%";
    bar.appendChild(g);
  }
  cell.appendChild(bar);
  cell.appendChild(el("span", fmt(allocated || 0) + " / " + (deserved === null || deserved === undefined ? "–" : fmt(deserved)) + " / " + fmt(cap) + (guarantee ? " (guaranteed " + fmt(guarantee) + ")" : ""), "amount"));
  return cell;
}

async function renderQueues() {
  show("queues-view");
  const load = async () => {
    const [data, cluster] = await Promise.all([apiJson("/api/v1/queues"), apiJson("/api/v1/cluster")]);
    const n = cluster.nodes[0];
    $("#cluster").textContent = "Node " + n.name + ": " + cores(n.allocated.cpu_millis) + " of " + cores(n.allocatable.cpu_millis) +
      " CPU, " + bytes(n.allocated.memory_bytes) + " of " + bytes(n.allocatable.memory_bytes) + " memory, " +
      count(n.allocated.gpu) + " of " + count(n.allocatable.gpu) + " GPUs allocated; store: " + cluster.store;
    const body = $("#queues-table tbody");
    body.replaceChildren();
    for (const q of data.queues) {
      const d = q.deserved || {};
      const tr = row([q.name, q.group, q.weight,
        meter(q.allocated.cpu_millis, q.capability.cpu_millis, q.guarantee.cpu_millis, d.cpu_millis, cores),
        meter(q.allocated.memory_bytes, q.capability.memory_bytes, q.guarantee.memory_bytes, d.memory_bytes, bytes),
        meter(q.allocated.gpu, q.capability.gpu, q.guarantee.gpu, d.gpu, count),
        q.pending_jobs]);
      tr.dataset.queue = q.name;
      tr.dataset.allocatedCpu = q.allocated.cpu_millis || 0;
      body.appendChild(tr);
    }
  };
  await load();
  refreshTimer = setInterval(() => load().catch(() => {}), 2000);
}

// ---------------------------------------------------------------- routing

async function route() {
  stopTimers();
  if (!token()) { showLogin(""); return; }
  $("#sign-out").hidden = false;
  try {
    if (!$("#who").textContent) {
      const me = await apiJson("/api/v1/whoami");
      $("#who").textContent = me.user + " (" + me.group + (me.admin ? ", admin" : "") + ")";
    }
    const path = location.hash.replace(/^#/, "").split("?")[0];
    const m = path.match(/^\/jobs\/(.+)$/);
    if (m) await renderJob(decodeURIComponent(m[1]));
    else if (path === "/queues") await renderQueues();
    else await renderJobs();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      const p = el("p", e.message, "error");
      document.querySelector("main").prepend(p);
      setTimeout(() => p.remove(), 5000);
    }
  }
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem(TOKEN_KEY, $("#token-input").value.trim());
  $("#token-input").value = "";
  $("#who").textContent = "";
  route();
});
$("#sign-out").addEventListener("click", () => showLogin(""));
window.addEventListener("hashchange", route);
route();

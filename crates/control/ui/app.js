// mofang control-plane UI: plain JavaScript over the REST API (/api/v1), no build step.
// Every string that comes from the server is put into the page with textContent (or as an
// attribute value through the DOM API), never parsed as HTML.
//
// Views are chosen by the URL hash: #/jobs[?state=&user=&queue=], #/jobs/<id>, #/queues.
// A token can be handed over in the address once — ?token=T or #token=T[&/jobs/<id>] — it is
// stored in localStorage and removed from the address bar at once.
"use strict";

const TOKEN_KEY = "mofang.token";
const REFRESH_MS = 2000;
const LOG_LIMIT = 2 * 1024 * 1024; // characters of log kept in the page
const FINAL = ["Succeeded", "Failed", "Cancelled"];
const $ = (sel) => document.querySelector(sel);

let refreshTimer = null; // the current view's periodic reload
let generation = 0; // bumped on every navigation; stale async work checks it and stops
let log = null; // the live log stream: {job, role, index, attempt, controller, ended, seenAttempt}

// ------------------------------------------------------------------ token bootstrap

// Runs at load and on every hash change (a #token= link opened in an already-open tab).
function bootstrapToken() {
  const params = new URLSearchParams(location.search);
  let token = params.get("token");
  let hash = location.hash;
  if (token) params.delete("token");
  const m = hash.match(/^#token=([^&]*)(?:&(.*))?$/);
  if (m) {
    token = decodeURIComponent(m[1]);
    hash = "#" + (m[2] || "/jobs");
  }
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + hash);
    $("#who").textContent = "";
  }
}

function token() { return localStorage.getItem(TOKEN_KEY); }

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// fetch with the token; a non-2xx answer becomes an ApiError carrying the server's
// {"error": "..."} text, and a 401 also sends the user back to the sign-in form.
async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + (token() || "") }, options.headers || {});
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "cannot reach the server (" + e.message + ")");
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = body.error;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) showLogin(message);
    throw new ApiError(response.status, message);
  }
  return response;
}

async function apiJson(path, options) { return (await api(path, options)).json(); }

// ------------------------------------------------------------------ DOM helpers

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function badge(state) {
  const b = el("span", state, "badge");
  b.dataset.state = state;
  return b;
}

function cell(content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content);
  else if (content !== undefined && content !== null) td.textContent = String(content);
  return td;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(cell(c));
  return tr;
}

function link(text, href) {
  const a = el("a", text);
  a.href = href;
  return a;
}

// A local time with the exact ISO time as its tooltip.
function timeEl(ms) {
  if (!ms) return el("span", "—", "muted");
  const t = el("time", when(ms));
  t.dateTime = new Date(ms).toISOString();
  t.title = t.dateTime;
  return t;
}

function setError(sel, e) { $(sel).textContent = e ? e.message || String(e) : ""; }

// ------------------------------------------------------------------ formatting

function when(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

// 45s, 3m 20s, 2h 5m, 3d 4h
function human(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}

function ago(ms) { return ms ? human((Date.now() - ms) / 1000) : ""; }

function duration(from, to) { return from ? human(((to || Date.now()) - from) / 1000) : ""; }

const isNum = (v) => typeof v === "number" && isFinite(v);

function cores(millis) {
  if (!isNum(millis)) return "∞";
  const c = millis / 1000;
  return Number.isInteger(c) ? String(c) : c.toFixed(2).replace(/0$/, "");
}

function bytes(b) {
  if (!isNum(b)) return "∞";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : String(b)) + " " + units[i];
}

function count(n) { return isNum(n) ? String(n) : "∞"; }

const SIGNALS = { 1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
  9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM" };

function exitText(r) {
  if (isNum(r.signal)) return (SIGNALS[r.signal] || "signal") + " (" + r.signal + ")";
  if (isNum(r.exit_code)) return "exit " + r.exit_code;
  return "";
}

// A command line as a shell would need it typed: arguments with spaces or quotes are quoted.
function commandLine(words) {
  return words.map((w) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : "'" + w.replace(/'/g, "'\\''") + "'")).join(" ");
}

// ------------------------------------------------------------------ views and navigation

function show(id) {
  for (const s of ["login", "jobs-view", "job-view", "queues-view"]) $("#" + s).hidden = s !== id;
  $("#nav-jobs").classList.toggle("active", id === "jobs-view" || id === "job-view");
  $("#nav-queues").classList.toggle("active", id === "queues-view");
}

function stopLog() {
  if (log && log.controller) log.controller.abort();
  log = null;
}

function stopAll() {
  generation++;
  if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
  stopLog();
}

// Runs `load` now and every REFRESH_MS while this view is current; errors go to `errorSel`.
// A reload still under way when the next is due is not overlapped (an older answer arriving
// last would otherwise be drawn over a newer one).
async function every(load, errorSel) {
  const gen = generation;
  let busy = false;
  const tick = async () => {
    if (gen !== generation || busy) return;
    busy = true;
    try {
      await load(gen);
      if (gen === generation) setError(errorSel, null);
    } catch (e) {
      if (gen === generation && e.name !== "AbortError" && !(e instanceof ApiError && e.status === 401)) setError(errorSel, e);
    } finally {
      busy = false;
    }
  };
  await tick();
  if (gen === generation) refreshTimer = setInterval(tick, REFRESH_MS);
}

function showLogin(message) {
  stopAll();
  localStorage.removeItem(TOKEN_KEY);
  $("#sign-out").hidden = true;
  $("#who").textContent = "";
  $("#login-error").textContent = message || "";
  show("login");
  $("#token-input").focus();
}

function banner(message) {
  const b = $("#banner");
  b.textContent = message || "";
  b.hidden = !message;
}

// ------------------------------------------------------------------ jobs list

function hashQuery() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : "");
}

const FILTERS = [["state", "#filter-state"], ["user", "#filter-user"], ["queue", "#filter-queue"]];

function setQueueOptions(names, selected) {
  const select = $("#filter-queue");
  const want = ["", ...names];
  if (selected && !names.includes(selected)) want.push(selected);
  const have = Array.from(select.options).map((o) => o.value);
  if (have.join("\n") !== want.join("\n")) {
    select.replaceChildren();
    for (const name of want) {
      const o = el("option", name || "any");
      o.value = name;
      select.appendChild(o);
    }
  }
  select.value = selected || "";
}

async function renderJobs() {
  show("jobs-view");
  const q = hashQuery();
  for (const [k, sel] of FILTERS) if (k !== "queue") $(sel).value = q.get(k) || "";
  setQueueOptions([], q.get("queue"));
  apiJson("/api/v1/queues")
    .then((d) => setQueueOptions(d.queues.map((x) => x.name), q.get("queue")))
    .catch(() => {});
  const params = new URLSearchParams();
  for (const [k] of FILTERS) if (q.get(k)) params.set(k, q.get(k));
  await every(async (gen) => {
    const data = await apiJson("/api/v1/jobs?" + params.toString());
    if (gen !== generation) return;
    const body = $("#jobs-table tbody");
    body.replaceChildren();
    for (const j of data.jobs) {
      const href = "#/jobs/" + encodeURIComponent(j.id);
      const age = el("span", ago(j.created_ms));
      age.title = "created " + new Date(j.created_ms).toLocaleString();
      const tr = row([link(j.name, href), el("code", j.id), j.user, j.queue, badge(j.state),
        j.gang + " / " + j.replicas, j.restarts, age, j.message]);
      tr.dataset.jobId = j.id;
      tr.dataset.state = j.state;
      tr.lastChild.className = "message";
      tr.addEventListener("click", (e) => { if (!e.target.closest("a")) location.hash = href; });
      body.appendChild(tr);
    }
    $("#jobs-empty").hidden = data.jobs.length > 0;
    $("#jobs-updated").textContent = "updated " + new Date().toLocaleTimeString();
  }, "#jobs-error");
}

// Filter controls write the hash (so a filtered view is a link); the hash change reloads.
function applyFilters() {
  const params = new URLSearchParams();
  for (const [k, sel] of FILTERS) {
    const v = $(sel).value.trim();
    if (v) params.set(k, v);
  }
  const s = params.toString();
  const hash = "#/jobs" + (s ? "?" + s : "");
  if (location.hash !== hash) location.hash = hash;
}

$("#filters").addEventListener("submit", (e) => { e.preventDefault(); applyFilters(); });
$("#filter-state").addEventListener("change", applyFilters);
$("#filter-queue").addEventListener("change", applyFilters);
$("#filter-user").addEventListener("change", applyFilters);

// ------------------------------------------------------------------ one job

function summary(j) {
  const dl = $("#job-summary");
  dl.replaceChildren();
  const items = [["ID", el("code", j.id)], ["User", j.user], ["Group", j.group],
    ["Queue", link(j.queue, "#/jobs?queue=" + encodeURIComponent(j.queue))], ["Priority", j.priority],
    ["Gang", j.gang + " of " + j.replicas + " replica" + (j.replicas === 1 ? "" : "s")],
    ["Restarts", j.restarts + " of at most " + j.spec.backoff_limit],
    ["Created", timeEl(j.created_ms)], ["Queued", timeEl(j.queued_ms)], ["Started", timeEl(j.started_ms)],
    ["Finished", timeEl(j.finished_ms)]];
  if (j.started_ms) items.push(["Run time", duration(j.started_ms, j.finished_ms)]);
  else if (!FINAL.includes(j.state)) items.push(["Waiting for", duration(j.queued_ms || j.created_ms, null)]);
  if (j.spec.active_deadline_seconds) items.push(["Deadline", human(j.spec.active_deadline_seconds) + " after start"]);
  for (const [k, v] of items) {
    dl.appendChild(el("dt", k));
    const dd = el("dd");
    if (v instanceof Node) dd.appendChild(v); else dd.textContent = String(v);
    dl.appendChild(dd);
  }
}

function tasks(j) {
  const body = $("#tasks-table tbody");
  body.replaceChildren();
  for (const t of j.spec.tasks) {
    const r = t.resources || {};
    const tr = row([t.role, t.replicas, el("code", commandLine((t.command || []).concat(t.args || []))),
      r.cpu, r.memory && r.memory !== "0" ? r.memory : "—", r.gpu || "—", t.restart_policy]);
    tr.dataset.role = t.role;
    body.appendChild(tr);
  }
}

// Newest attempt first within each replica, replicas in spec order.
function sortedAttempts(j) {
  const roles = j.spec.tasks.map((t) => t.role);
  return j.replica_attempts.slice().sort((a, b) =>
    roles.indexOf(a.role) - roles.indexOf(b.role) || a.index - b.index || b.attempt - a.attempt);
}

function attempts(j) {
  const body = $("#replicas-table tbody");
  body.replaceChildren();
  const list = sortedAttempts(j);
  for (const r of list) {
    const u = r.usage || {};
    const cpu = isNum(u.user_cpu_ms) ? ((u.user_cpu_ms + (u.system_cpu_ms || 0)) / 1000).toFixed(2) + " s" : "";
    const rss = isNum(u.max_rss_kib) ? bytes(u.max_rss_kib * 1024) : "";
    const name = r.role + "-" + r.index;
    const pick = link(name, "#");
    pick.title = "show this attempt's log";
    pick.addEventListener("click", (e) => { e.preventDefault(); chooseLog(r.role, r.index, r.attempt); });
    const tr = row([pick, r.attempt, badge(r.state), r.node, r.pid, exitText(r), cpu, rss,
      timeEl(r.started_ms), r.started_ms ? duration(r.started_ms, r.finished_ms) : "", r.message]);
    tr.dataset.replica = name;
    tr.dataset.attempt = r.attempt;
    tr.dataset.state = r.state;
    tr.lastChild.className = "message";
    body.appendChild(tr);
  }
  $("#replicas-empty").hidden = list.length > 0;
}

function conditions(j) {
  const ol = $("#conditions");
  ol.replaceChildren();
  let previous = null;
  for (const c of j.conditions) {
    const li = el("li");
    li.dataset.state = c.state;
    li.appendChild(badge(c.state));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(timeEl(c.time_ms));
    if (previous) li.appendChild(el("span", " (+" + human((c.time_ms - previous) / 1000) + ")", "muted"));
    li.appendChild(el("div", c.reason + (c.message ? ": " + c.message : ""), "message"));
    ol.appendChild(li);
    previous = c.time_ms;
  }
}

function events(j) {
  const body = $("#events-table tbody");
  body.replaceChildren();
  for (const e of j.events) {
    const tr = row([el("span", e.kind, "kind " + e.kind), e.reason, "×" + e.count, timeEl(e.first_ms), timeEl(e.last_ms), e.message]);
    tr.dataset.reason = e.reason;
    tr.lastChild.className = "message";
    body.appendChild(tr);
  }
}

// The log pickers: every replica of the spec, and the attempts seen of the chosen one.
function logPickers(j) {
  const replica = $("#log-replica");
  const names = [];
  for (const t of j.spec.tasks) for (let i = 0; i < t.replicas; i++) names.push(t.role + ":" + i);
  if (Array.from(replica.options).map((o) => o.value).join("\n") !== names.join("\n")) {
    const keep = replica.value;
    replica.replaceChildren();
    for (const n of names) {
      const o = el("option", n.replace(":", "-"));
      o.value = n;
      replica.appendChild(o);
    }
    if (names.includes(keep)) replica.value = keep;
  }
  const [role, index] = replica.value.split(":");
  const tries = j.replica_attempts.filter((r) => r.role === role && String(r.index) === index)
    .map((r) => String(r.attempt)).sort((a, b) => b - a);
  const attempt = $("#log-attempt");
  const want = ["", ...tries];
  if (Array.from(attempt.options).map((o) => o.value).join("\n") !== want.join("\n")) {
    const keep = attempt.value;
    attempt.replaceChildren();
    for (const a of want) {
      const o = el("option", a === "" ? "latest attempt" : "attempt " + a);
      o.value = a;
      attempt.appendChild(o);
    }
    attempt.value = want.includes(keep) ? keep : "";
  }
  return tries.length ? Number(tries[0]) : null;
}

function chooseLog(role, index, attempt) {
  $("#log-replica").value = role + ":" + index;
  const o = Array.from($("#log-attempt").options).find((x) => x.value === String(attempt));
  if (!o) {
    const added = el("option", "attempt " + attempt);
    added.value = String(attempt);
    $("#log-attempt").appendChild(added);
  }
  $("#log-attempt").value = String(attempt);
  followLog($("#job-view").dataset.jobId);
}

// Streams the chosen replica's log (follow=true) into the panel, keeping the view at the
// bottom while the user has not scrolled up. A new choice restarts the stream.
async function followLog(id, force) {
  const [role, index] = ($("#log-replica").value || ":0").split(":");
  const attempt = $("#log-attempt").value;
  if (!force && log && log.job === id && log.role === role && log.index === index && log.attempt === attempt) return;
  stopLog();
  const controller = new AbortController();
  const me = { job: id, role, index, attempt, controller, ended: false, seenAttempt: null };
  log = me;
  const pre = $("#log");
  pre.replaceChildren();
  const text = document.createTextNode("");
  pre.appendChild(text);
  const status = $("#log-status");
  status.textContent = "connecting…";
  const params = new URLSearchParams({ follow: "true", index: index || "0" });
  if (role) params.set("role", role);
  if (attempt !== "") params.set("attempt", attempt);
  try {
    const response = await api("/api/v1/jobs/" + encodeURIComponent(id) + "/logs?" + params.toString(),
      { signal: controller.signal });
    if (log !== me) return;
    status.textContent = "following";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (log !== me) return;
      if (done) break;
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      text.appendData(decoder.decode(value, { stream: true }));
      if (text.length > LOG_LIMIT) text.deleteData(0, text.length - LOG_LIMIT);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    text.appendData(decoder.decode());
    status.textContent = "ended" + (text.length ? "" : " (empty log)");
  } catch (e) {
    if (log === me && e.name !== "AbortError") status.textContent = e.message;
  }
  if (log === me) me.ended = true;
}

// Starts, keeps or restarts the log stream for the chosen replica. A replica that has not
// started has no log yet: nothing is requested until it has (no request left hanging).
function syncLog(j) {
  const latest = logPickers(j);
  if (latest === null) {
    if (log) stopLog();
    $("#log").replaceChildren();
    $("#log-status").textContent = "not started yet";
  } else if (!log) {
    followLog(j.id);
    log.seenAttempt = latest;
  } else if (log.attempt === "" && log.ended && latest > (log.seenAttempt ?? -1)) {
    // Following the latest attempt, which ended, and the replica was restarted since.
    followLog(j.id, true);
    log.seenAttempt = latest;
  }
}

async function renderJob(id) {
  show("job-view");
  const view = $("#job-view");
  view.dataset.jobId = id;
  for (const s of ["#job-name", "#job-message", "#job-error", "#cancel-error", "#job-state", "#log-status"]) $(s).textContent = "";
  for (const s of ["#tasks-table tbody", "#replicas-table tbody", "#events-table tbody", "#conditions", "#job-summary", "#log", "#log-replica"]) $(s).replaceChildren();
  $("#log-attempt").replaceChildren(Object.assign(el("option", "latest attempt"), { value: "" }));
  $("#job-state").removeAttribute("data-state");
  $("#cancel").disabled = true;
  let job = null;
  const load = async (gen) => {
    const j = await apiJson("/api/v1/jobs/" + encodeURIComponent(id));
    if (gen !== generation) return;
    job = j;
    document.title = j.name + " · mofang";
    $("#job-name").textContent = j.name;
    const state = $("#job-state");
    state.textContent = j.state;
    state.dataset.state = j.state;
    $("#job-message").textContent = j.message;
    $("#cancel").disabled = FINAL.includes(j.state);
    summary(j);
    tasks(j);
    attempts(j);
    conditions(j);
    events(j);
    syncLog(j);
  };
  $("#cancel").onclick = async () => {
    if (!job || !confirm("Cancel job " + job.name + " (" + job.id + ")? Its processes get SIGTERM, then SIGKILL.")) return;
    $("#cancel").disabled = true;
    setError("#cancel-error", null);
    try {
      await api("/api/v1/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST" });
      await load(generation);
    } catch (e) {
      setError("#cancel-error", e);
      $("#cancel").disabled = !!job && FINAL.includes(job.state);
    }
  };
  $("#log-replica").onchange = () => {
    $("#log-attempt").value = "";
    stopLog();
    if (job) syncLog(job);
  };
  $("#log-attempt").onchange = () => {
    stopLog();
    if (job) syncLog(job);
  };
  await every(load, "#job-error");
}

// ------------------------------------------------------------------ queues

// A bar scaled to `full` (capability, or the cluster total when the queue has none): the fill
// is what is allocated, the marks the guarantee and the deserved share.
function meter(resource, allocated, capability, guarantee, deserved, clusterTotal, fmt) {
  const box = el("div", null, "meter");
  box.dataset.resource = resource;
  const full = isNum(capability) ? capability : isNum(clusterTotal) && clusterTotal > 0 ? clusterTotal
    : Math.max(allocated || 0, guarantee || 0, isNum(deserved) ? deserved : 0, 1);
  const pct = (v) => Math.min(100, (100 * v) / (full || 1)) + "%";
  const bar = el("div", null, "bar");
  const fill = el("div", null, "fill");
  fill.style.width = full ? pct(allocated || 0) : "0%";
  bar.appendChild(fill);
  if (guarantee) {
    const g = el("div", null, "mark guarantee");
    g.style.left = pct(guarantee);
    g.title = "guarantee " + fmt(guarantee);
    bar.appendChild(g);
  }
  if (isNum(deserved) && deserved > 0) {
    const d = el("div", null, "mark deserved");
    d.style.left = pct(deserved);
    d.title = "deserved " + fmt(deserved);
    bar.appendChild(d);
  }
  box.appendChild(bar);
  box.appendChild(el("div", fmt(allocated || 0) + (isNum(capability) ? " of " + fmt(capability) : " (no cap)"), "amount"));
  const notes = [];
  if (guarantee) notes.push("guaranteed " + fmt(guarantee));
  if (deserved !== undefined) notes.push("deserved " + (isNum(deserved) ? fmt(deserved) : "∞"));
  if (notes.length) box.appendChild(el("div", notes.join(" · "), "amount muted"));
  return box;
}

async function renderQueues() {
  show("queues-view");
  await every(async (gen) => {
    const [data, cluster] = await Promise.all([apiJson("/api/v1/queues"), apiJson("/api/v1/cluster")]);
    if (gen !== generation) return;
    const total = { cpu_millis: 0, memory_bytes: 0, gpu: 0 };
    const nodes = $("#cluster-table tbody");
    nodes.replaceChildren();
    const lines = [];
    for (const n of cluster.nodes) {
      for (const k of Object.keys(total)) total[k] += n.allocatable[k] || 0;
      const tr = row([n.name,
        meter("cpu", n.allocated.cpu_millis, n.allocatable.cpu_millis, 0, undefined, null, cores),
        meter("memory", n.allocated.memory_bytes, n.allocatable.memory_bytes, 0, undefined, null, bytes),
        meter("gpu", n.allocated.gpu, n.allocatable.gpu, 0, undefined, null, count)]);
      tr.dataset.node = n.name;
      tr.dataset.allocatedCpu = n.allocated.cpu_millis || 0;
      nodes.appendChild(tr);
      lines.push("Node " + n.name + ": " + cores(n.allocated.cpu_millis) + " of " + cores(n.allocatable.cpu_millis) +
        " CPU, " + bytes(n.allocated.memory_bytes) + " of " + bytes(n.allocatable.memory_bytes) + " memory, " +
        count(n.allocated.gpu) + " of " + count(n.allocatable.gpu) + " GPUs allocated");
    }
    const live = Object.entries(cluster.live_jobs || {}).filter(([, v]) => v > 0).map(([k, v]) => v + " " + k);
    lines.push("live jobs: " + (live.length ? live.join(", ") : "none") + "; metadata store: " + cluster.store);
    $("#cluster").textContent = lines.join("; ");
    const body = $("#queues-table tbody");
    body.replaceChildren();
    for (const q of data.queues) {
      const d = q.deserved || undefined;
      const pending = q.pending_jobs
        ? link(String(q.pending_jobs), "#/jobs?queue=" + encodeURIComponent(q.name) + "&state=Queued") : "0";
      const tr = row([link(q.name, "#/jobs?queue=" + encodeURIComponent(q.name)), q.group || "—", q.weight,
        meter("cpu", q.allocated.cpu_millis, q.capability.cpu_millis, q.guarantee.cpu_millis, d && d.cpu_millis, total.cpu_millis, cores),
        meter("memory", q.allocated.memory_bytes, q.capability.memory_bytes, q.guarantee.memory_bytes, d && d.memory_bytes, total.memory_bytes, bytes),
        meter("gpu", q.allocated.gpu, q.capability.gpu, q.guarantee.gpu, d && d.gpu, total.gpu, count),
        pending]);
      tr.dataset.queue = q.name;
      tr.dataset.allocatedCpu = q.allocated.cpu_millis || 0;
      tr.dataset.allocatedMemory = q.allocated.memory_bytes || 0;
      tr.dataset.allocatedGpu = q.allocated.gpu || 0;
      tr.dataset.pendingJobs = q.pending_jobs || 0;
      body.appendChild(tr);
    }
    $("#queues-updated").textContent = "updated " + new Date().toLocaleTimeString();
  }, "#queues-error");
}

// ------------------------------------------------------------------ routing

async function route() {
  bootstrapToken();
  stopAll();
  banner("");
  document.title = "mofang control plane";
  if (!token()) { showLogin(""); return; }
  $("#sign-out").hidden = false;
  const gen = generation;
  try {
    if (!$("#who").textContent) {
      const me = await apiJson("/api/v1/whoami");
      if (gen !== generation) return;
      $("#who").textContent = me.user + " (" + me.group + (me.admin ? ", admin" : "") + ")";
    }
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401) && gen === generation) banner(e.message);
    return;
  }
  const path = location.hash.replace(/^#/, "").split("?")[0];
  const m = path.match(/^\/jobs\/([^/]+)$/);
  if (m) await renderJob(decodeURIComponent(m[1]));
  else if (path === "/queues") await renderQueues();
  else await renderJobs();
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("#token-input").value.trim();
  if (!value) return;
  localStorage.setItem(TOKEN_KEY, value);
  $("#token-input").value = "";
  $("#login-error").textContent = "";
  $("#who").textContent = "";
  route();
});
$("#sign-out").addEventListener("click", () => showLogin(""));
window.addEventListener("hashchange", route);
route();

// Rheo's dashboard: plain JavaScript over the Flink-compatible REST API, no build step. It
// polls the API every second and redraws the selected view.
"use strict";

const REFRESH_MS = 1000;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

async function api(path, options) {
  const response = await fetch(path, options);
  const text = await response.text();
  const body = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error((body.errors && body.errors.join("; ")) || response.statusText);
  return body;
}

function duration(ms) {
  if (ms < 0 || ms == null) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + (s % 60) + "s";
  return Math.floor(m / 60) + "h " + (m % 60) + "m";
}
function bytes(n) {
  if (n == null || n < 0) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
const time = (ms) => (ms > 0 ? new Date(ms).toLocaleTimeString() : "-");
const rate = (v) => (v == null || isNaN(v) ? "-" : v >= 1000 ? (v / 1000).toFixed(1) + "k" : v.toFixed(v < 10 ? 1 : 0));
const stateBadge = (s) => `<span class="state ${esc(s)}">${esc(s)}</span>`;

// The view: #/job/<id>/<tab>, #/taskmanagers or #/config.
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "job" && parts[1]) return { view: "job", id: parts[1], tab: parts[2] || "overview" };
  if (parts[0] === "taskmanagers" || parts[0] === "config") return { view: parts[0] };
  return { view: "home" };
}

let jobs = [];
let message = "";
let messageIsError = false;

async function refreshHeader() {
  const [overview, jobsOverview] = await Promise.all([api("/overview"), api("/jobs/overview")]);
  $("version").textContent = "Flink REST " + overview["flink-version"] + " · " + overview["flink-commit"];
  $("cluster-summary").textContent =
    `${overview.taskmanagers} TaskManager(s) · ${overview["slots-available"]}/${overview["slots-total"]} slots free · ${overview["jobs-running"]} running`;
  jobs = jobsOverview.jobs.sort((a, b) => b["start-time"] - a["start-time"]);
  const current = route();
  $("job-list").innerHTML = jobs.length
    ? jobs.map((j) => `<li><a href="#/job/${j.jid}" class="${current.id === j.jid ? "selected" : ""}" data-job="${j.jid}">${esc(j.name)}<br>${stateBadge(j.state)} <span class="muted">${duration(j.duration)}</span></a></li>`).join("")
    : `<li class="muted">No jobs</li>`;
}

async function render() {
  const r = route();
  if (r.view === "home") {
    const running = jobs.find((j) => !["FINISHED", "FAILED", "CANCELED"].includes(j.state)) || jobs[0];
    if (running) { location.hash = "#/job/" + running.jid; return; }
    $("main").innerHTML = `<p class="muted">No jobs yet. Submit one with <code>rheo submit JOB</code>.</p>`;
    return;
  }
  if (r.view === "taskmanagers") return renderTaskManagers();
  if (r.view === "config") return renderConfig();
  return renderJob(r.id, r.tab);
}

async function renderTaskManagers() {
  const { taskmanagers } = await api("/taskmanagers");
  $("main").innerHTML = `<h2>Task Managers</h2><table id="taskmanagers"><tr><th>ID</th><th>Data port</th><th>Last heartbeat</th><th class="num">Slots</th><th class="num">Free slots</th><th class="num">CPU cores</th><th class="num">Physical memory</th></tr>` +
    taskmanagers.map((t) => `<tr><td>${esc(t.id)}</td><td>${t.dataPort}</td><td>${time(t.timeSinceLastHeartbeat)}</td><td class="num">${t.slotsNumber}</td><td class="num">${t.freeSlots}</td><td class="num">${t.hardware.cpuCores}</td><td class="num">${bytes(t.hardware.physicalMemory)}</td></tr>`).join("") + `</table>`;
}

async function renderConfig() {
  const [config, env] = await Promise.all([api("/jobmanager/config"), api("/jobmanager/environment")]);
  $("main").innerHTML = `<h2>Job Manager</h2><p class="muted">${esc(env.jvm.version)} · ${esc(env.jvm.arch)}</p><table id="config"><tr><th>Key</th><th>Value</th></tr>` +
    config.sort((a, b) => a.key.localeCompare(b.key)).map((e) => `<tr><td>${esc(e.key)}</td><td>${esc(e.value)}</td></tr>`).join("") + `</table>`;
}

const TABS = [["overview", "Overview"], ["checkpoints", "Checkpoints"], ["exceptions", "Exceptions"], ["configuration", "Configuration"]];

async function renderJob(id, tab) {
  const job = await api(`/jobs/${id}`);
  const ended = ["FINISHED", "FAILED", "CANCELED"].includes(job.state);
  let html = `<h2 class="job-title">${esc(job.name)} ${stateBadge(job.state)}</h2>
    <div class="muted">Job ID <code id="job-id">${esc(job.jid)}</code> · started ${time(job["start-time"])} · duration ${duration(job.duration)}</div>
    <div class="buttons">
      <button id="btn-savepoint" ${ended ? "disabled" : ""}>Trigger savepoint</button>
      <button id="btn-stop" ${ended ? "disabled" : ""}>Stop with savepoint</button>
      <button id="btn-cancel" class="danger" ${ended ? "disabled" : ""}>Cancel job</button>
      <span id="message" class="${messageIsError ? "error" : ""}">${esc(message)}</span>
    </div>
    <div class="tabs">${TABS.map(([t, label]) => `<a href="#/job/${id}/${t}" class="${t === tab ? "selected" : ""}">${label}</a>`).join("")}</div>`;
  if (tab === "checkpoints") html += await checkpointsView(id);
  else if (tab === "exceptions") html += await exceptionsView(id);
  else if (tab === "configuration") html += await jobConfigView(id);
  else html += await overviewView(job);
  $("main").innerHTML = html;
  $("btn-savepoint").onclick = () => savepoint(id, false);
  $("btn-stop").onclick = () => savepoint(id, true);
  $("btn-cancel").onclick = () => cancelJob(id);
}

// Flink's colours: a vertex's background goes from idle blue to busy red, and to black when it
// is back-pressured more than busy.
function vertexColor(busy, backPressured) {
  if (busy == null) return "#ffffff";
  if (backPressured > busy) return `hsl(0, 0%, ${Math.round(95 - backPressured * 60)}%)`;
  const hue = 240 + busy * 120; // 240 blue (idle) .. 360 red (busy)
  return `hsl(${Math.round(hue % 360)}, 80%, ${Math.round(92 - busy * 32)}%)`;
}

async function overviewView(job) {
  const { plan } = await api(`/jobs/${job.jid}/plan`);
  const get = "numRecordsInPerSecond,numRecordsOutPerSecond,busyTimeMsPerSecond,backPressuredTimeMsPerSecond,idleTimeMsPerSecond";
  const running = job.state === "RUNNING";
  const stats = await Promise.all(plan.nodes.map(async (node) => {
    const vertex = job.vertices.find((v) => v.id === node.id) || {};
    const [metrics, watermarks] = running
      ? await Promise.all([api(`/jobs/${job.jid}/vertices/${node.id}/metrics?get=${get}`), api(`/jobs/${job.jid}/vertices/${node.id}/watermarks`)])
      : [[], []];
    const m = Object.fromEntries(metrics.map((x) => [x.id, parseFloat(x.value)]));
    const p = Math.max(1, node.parallelism);
    const lowWatermark = watermarks.length ? Math.min(...watermarks.map((w) => parseInt(w.value, 10))) : null;
    return {
      node, vertex,
      inRate: m.numRecordsInPerSecond, outRate: m.numRecordsOutPerSecond,
      busy: m.busyTimeMsPerSecond == null ? null : Math.min(1, m.busyTimeMsPerSecond / 1000 / p),
      backPressured: m.backPressuredTimeMsPerSecond == null ? null : Math.min(1, m.backPressuredTimeMsPerSecond / 1000 / p),
      watermark: lowWatermark,
    };
  }));
  return `<div class="legend"><span><i style="background:${vertexColor(0, 0)}"></i>idle</span><span><i style="background:${vertexColor(1, 0)}"></i>busy</span><span><i style="background:${vertexColor(0, 1)}"></i>back-pressured</span></div>
    <div id="graph">${graphSvg(stats)}</div>
    <h3>Vertices</h3><table id="vertices"><tr><th>Name</th><th class="num">Parallelism</th><th class="num">Records received</th><th class="num">Records sent</th><th>Status</th></tr>` +
    job.vertices.map((v) => `<tr><td>${esc(v.name)}</td><td class="num">${v.parallelism}</td><td class="num">${v.metrics["read-records"]}</td><td class="num">${v.metrics["write-records"]}</td><td>${stateBadge(v.status)}</td></tr>`).join("") + `</table>`;
}

// Lays the plan out left to right: a vertex's column is its longest distance from a source.
function graphSvg(stats) {
  const byId = Object.fromEntries(stats.map((s) => [s.node.id, s]));
  const depth = {};
  const depthOf = (id, seen = new Set()) => {
    if (depth[id] != null) return depth[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    const inputs = (byId[id] && byId[id].node.inputs) || [];
    depth[id] = inputs.length ? 1 + Math.max(...inputs.map((i) => depthOf(i.id, seen))) : 0;
    return depth[id];
  };
  stats.forEach((s) => depthOf(s.node.id));
  const columns = [];
  stats.slice().reverse().forEach((s) => (columns[depth[s.node.id]] = columns[depth[s.node.id]] || []).push(s));
  const W = 270, H = 128, GAPX = 90, GAPY = 30, PAD = 20;
  const pos = {};
  columns.forEach((col, c) => col.forEach((s, r) => (pos[s.node.id] = { x: PAD + c * (W + GAPX), y: PAD + r * (H + GAPY) })));
  const width = PAD * 2 + columns.length * (W + GAPX) - GAPX;
  const height = PAD * 2 + Math.max(...columns.map((c) => c.length)) * (H + GAPY) - GAPY;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#627d98"/></marker></defs>`;
  for (const s of stats) {
    for (const input of s.node.inputs || []) {
      const from = pos[input.id], to = pos[s.node.id];
      if (!from || !to) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
      svg += `<path d="M${x1},${y1} C${x1 + 45},${y1} ${x2 - 45},${y2} ${x2},${y2}" stroke="#627d98" stroke-width="1.5" fill="none" marker-end="url(#arrow)"/>`;
      svg += `<text x="${(x1 + x2) / 2}" y="${(y1 + y2) / 2 - 6}" text-anchor="middle" class="ship">${esc(input.ship_strategy)}</text>`;
    }
  }
  for (const s of stats) {
    const { x, y } = pos[s.node.id];
    const name = s.vertex.name || s.node.description.replace(/<br\/>/g, " ");
    const short = name.length > 38 ? name.slice(0, 36) + "…" : name;
    const pct = (v) => (v == null ? "-" : Math.round(v * 100) + "%");
    const dark = s.backPressured != null && s.backPressured > s.busy && s.backPressured > 0.5;
    const color = dark ? "#fff" : "#1f2933";
    svg += `<g class="vertex" data-vertex="${esc(s.node.id)}"><title>${esc(name)}</title>
      <rect x="${x}" y="${y}" width="${W}" height="${H}" rx="6" fill="${vertexColor(s.busy, s.backPressured)}" stroke="#486581"/>
      <text x="${x + 10}" y="${y + 20}" class="vertex-title" style="fill:${color}">${esc(short)}</text>
      <text x="${x + 10}" y="${y + 40}" style="fill:${color}">Parallelism: ${s.node.parallelism}</text>
      <text x="${x + 10}" y="${y + 58}" style="fill:${color}" class="rates">In: ${rate(s.inRate)} rec/s · Out: ${rate(s.outRate)} rec/s</text>
      <text x="${x + 10}" y="${y + 76}" style="fill:${color}">Busy: ${pct(s.busy)} · Back-pressured: ${pct(s.backPressured)}</text>
      <text x="${x + 10}" y="${y + 94}" style="fill:${color}" class="watermark">Low watermark: ${s.watermark == null ? "none" : esc(new Date(s.watermark).toISOString().replace("T", " ").replace("Z", ""))}</text>
      <text x="${x + 10}" y="${y + 112}" style="fill:${color}" class="muted">Records: ${s.vertex.metrics ? s.vertex.metrics["read-records"] + " in / " + s.vertex.metrics["write-records"] + " out" : "-"}</text></g>`;
  }
  return svg + "</svg>";
}

async function checkpointsView(id) {
  let stats, config = null;
  try { stats = await api(`/jobs/${id}/checkpoints`); } catch (e) { return `<p class="muted">${esc(e.message)}</p>`; }
  try { config = await api(`/jobs/${id}/checkpoints/config`); } catch (e) { /* checkpointing off */ }
  const c = stats.counts, latest = stats.latest;
  const card = (label, value, cid) => `<div class="card">${label}<b ${cid ? `id="${cid}"` : ""}>${value}</b></div>`;
  let html = `<div class="cards">${card("Triggered", c.total)}${card("In progress", c.in_progress)}${card("Completed", c.completed, "cp-completed")}${card("Failed", c.failed, "cp-failed")}${card("Restored", c.restored)}</div>`;
  const row = (cp) => `<tr class="checkpoint"><td>${cp.id}</td><td>${cp.is_savepoint ? "Savepoint" : "Checkpoint"}</td><td>${stateBadge(cp.status)}</td><td>${time(cp.trigger_timestamp)}</td><td class="num">${cp.end_to_end_duration} ms</td><td class="num">${bytes(cp.checkpointed_size)}</td><td class="num">${bytes(cp.state_size)}</td><td class="num">${cp.alignment_buffered ?? 0} B</td><td>${esc(cp.external_path || cp.failure_message || "")}</td></tr>`;
  html += `<h3>Latest</h3><table><tr><th></th><th>ID</th><th>Trigger time</th><th class="num">Duration</th><th class="num">Size</th><th>Path</th></tr>`;
  for (const [label, cp] of [["Completed checkpoint", latest.completed], ["Savepoint", latest.savepoint], ["Failed", latest.failed]]) {
    html += cp ? `<tr><td>${label}</td><td>${cp.id}</td><td>${time(cp.trigger_timestamp || cp.failure_timestamp)}</td><td class="num">${cp.end_to_end_duration ?? "-"} ms</td><td class="num">${bytes(cp.state_size)}</td><td>${esc(cp.external_path || cp.failure_message || "")}</td></tr>` : `<tr><td>${label}</td><td colspan="5" class="muted">none</td></tr>`;
  }
  if (latest.restored) html += `<tr><td>Restored</td><td>${latest.restored.id}</td><td>${time(latest.restored.restore_timestamp)}</td><td></td><td></td><td>${esc(latest.restored.external_path || "")}</td></tr>`;
  html += `</table><h3>History</h3><table id="checkpoint-history"><tr><th>ID</th><th>Type</th><th>Status</th><th>Triggered</th><th class="num">End to end duration</th><th class="num">Checkpointed size</th><th class="num">Full size</th><th class="num">Alignment buffered</th><th>Path</th></tr>${stats.history.map(row).join("") || `<tr><td colspan="9" class="muted">No checkpoints yet</td></tr>`}</table>`;
  if (config) html += `<h3>Configuration</h3><table><tr><td>Mode</td><td>${esc(config.mode)}</td></tr><tr><td>Interval</td><td>${config.interval} ms</td></tr><tr><td>Timeout</td><td>${config.timeout} ms</td></tr><tr><td>Storage</td><td>${esc(config.checkpoint_storage)}</td></tr><tr><td>Retained on cancel</td><td>${!config.externalization.delete_on_cancellation}</td></tr></table>`;
  return html;
}

async function exceptionsView(id) {
  const { exceptionHistory } = await api(`/jobs/${id}/exceptions`);
  if (!exceptionHistory.entries.length) return `<p class="muted" id="no-exceptions">No exceptions.</p>`;
  return exceptionHistory.entries.map((e) => `<div class="exception"><b>${esc(e.exceptionName)}</b> ${time(e.timestamp)} ${e.taskName ? "in " + esc(e.taskName) : ""} ${e.endpoint ? "on " + esc(e.endpoint) : ""}<pre class="trace">${esc(e.stacktrace)}</pre></div>`).join("") +
    (exceptionHistory.truncated ? `<p class="muted">Older exceptions were dropped.</p>` : "");
}

async function jobConfigView(id) {
  const config = await api(`/jobs/${id}/config`);
  const ec = config["execution-config"];
  return `<table id="job-config"><tr><th>Key</th><th>Value</th></tr><tr><td>Restart strategy</td><td>${esc(ec["restart-strategy"])}</td></tr><tr><td>Parallelism</td><td>${ec["job-parallelism"]}</td></tr><tr><td>Object reuse</td><td>${ec["object-reuse-mode"]}</td></tr></table>`;
}

function say(text, isError) { message = text; messageIsError = !!isError; const el = $("message"); if (el) { el.textContent = text; el.className = isError ? "error" : ""; } }

async function savepoint(id, stop) {
  try {
    const trigger = stop
      ? await api(`/jobs/${id}/stop`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ drain: false }) })
      : await api(`/jobs/${id}/savepoints`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ "cancel-job": false }) });
    say((stop ? "Stopping with a savepoint" : "Savepoint triggered") + "…");
    for (;;) {
      const result = await api(`/jobs/${id}/savepoints/${trigger["request-id"]}`);
      if (result.status.id === "COMPLETED") {
        const op = result.operation || {};
        if (op.location) say("Savepoint completed: " + op.location);
        else say("Savepoint failed: " + ((op["failure-cause"] || {})["stack-trace"] || "unknown cause"), true);
        return;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  } catch (e) { say(e.message, true); }
}

async function cancelJob(id) {
  if (!window.confirm("Cancel job " + id + "?")) return;
  try { await api(`/jobs/${id}`, { method: "PATCH" }); say("Cancel requested."); } catch (e) { say(e.message, true); }
}

let busy = false;
async function tick() {
  if (busy) return;
  busy = true;
  try {
    await refreshHeader();
    await render();
    $("refresh-state").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("refresh-state").textContent = "REST API unreachable: " + e.message;
  } finally { busy = false; }
}
window.addEventListener("hashchange", () => { message = ""; tick(); });
tick();
setInterval(tick, REFRESH_MS);

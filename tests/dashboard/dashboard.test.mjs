// The dashboard in headless Chromium: against a Rheo cluster with a running job, the page shows
// the job graph and a completed checkpoint, and a savepoint triggered from the page completes.
// Saves a screenshot of the graph to $SCREENSHOT (default dashboard.png in the temp directory;
// `make dashboard-screenshot` points it at docs/dashboard.png).
//
// Usage: RHEO_URL=http://127.0.0.1:PORT JOB_ID=... node dashboard.test.mjs
import { createRequire } from "node:module";
import assert from "node:assert/strict";

// PLAYWRIGHT_DIR: a directory whose node_modules holds playwright-core (mk/dashboard.mk caches one).
const require = createRequire(process.env.PLAYWRIGHT_DIR ? process.env.PLAYWRIGHT_DIR + "/" : import.meta.url);
const { chromium } = require("playwright-core");

const url = process.env.RHEO_URL;
const jobId = process.env.JOB_ID;
const screenshot = process.env.SCREENSHOT || (await import("node:os")).tmpdir() + "/dashboard.png";
assert.ok(url && jobId, "RHEO_URL and JOB_ID are required");
const TIMEOUT = 120_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-quic", "--disable-sync", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url + "/", { timeout: TIMEOUT });

  // The page selects the running job by itself and draws its graph from /plan.
  await page.waitForSelector(`#job-id:text("${jobId}")`, { timeout: TIMEOUT });
  await page.waitForSelector("#graph g.vertex", { timeout: TIMEOUT });
  const vertices = await page.$$eval("#graph g.vertex", (gs) => gs.map((g) => g.textContent));
  const plan = await (await fetch(`${url}/jobs/${jobId}/plan`)).json();
  assert.equal(vertices.length, plan.plan.nodes.length, "one drawn vertex per plan node");
  assert.ok(vertices.every((v) => /Parallelism: \d+/.test(v)), "every vertex shows its parallelism");
  // Rates appear once the job has run for two samples. The source (the plan node without
  // inputs) sends what its chain emits downstream: Out is above 0, and so is the next
  // vertex's In.
  const source = plan.plan.nodes.find((n) => !(n.inputs || []).length).id;
  const next = plan.plan.nodes.find((n) => (n.inputs || []).some((i) => i.id === source)).id;
  await page.waitForFunction(([source, next]) => {
    const rates = (id) => document.querySelector(`#graph g.vertex[data-vertex="${id}"] .rates`)?.textContent || "";
    return /Out: [1-9][\d.]*k? rec\/s/.test(rates(source)) && /In: [1-9][\d.]*k? rec\/s/.test(rates(next));
  }, [source, next], { timeout: TIMEOUT });
  const edges = await page.$$eval("#graph path[marker-end]", (p) => p.length);
  assert.ok(edges >= 1, "the graph has edges");
  // The page redraws every second: clip the page to where the graph is rather than hold on to
  // an element that the next redraw replaces.
  const box = await page.$eval("#graph", (g) => { const r = g.getBoundingClientRect(); return { x: r.x, y: r.y, width: r.width, height: r.height }; });
  await page.screenshot({ path: screenshot, clip: { x: Math.max(0, box.x - 10), y: Math.max(0, box.y - 40), width: box.width + 20, height: box.height + 50 } });

  // Checkpoints: a completed one appears in the history.
  await page.click(`a[href="#/job/${jobId}/checkpoints"]`);
  await page.waitForFunction(() => parseInt(document.querySelector("#cp-completed")?.textContent || "0", 10) >= 1, null, { timeout: TIMEOUT });
  await page.waitForSelector("#checkpoint-history tr.checkpoint", { timeout: TIMEOUT });

  // A savepoint from the page completes and shows its path.
  await page.click("#btn-savepoint");
  await page.waitForSelector('#message:has-text("Savepoint completed: ")', { timeout: TIMEOUT });
  const text = await page.textContent("#message");
  const location = text.replace("Savepoint completed: ", "").trim();
  const checkpoints = await (await fetch(`${url}/jobs/${jobId}/checkpoints`)).json();
  assert.equal(checkpoints.latest.savepoint?.external_path, location, "the page shows the savepoint the API reports");
  await page.waitForSelector("#checkpoint-history tr.checkpoint:has-text('Savepoint')", { timeout: TIMEOUT });

  // TaskManagers and configuration pages render from the API.
  await page.goto(url + "/#/taskmanagers");
  await page.waitForSelector("#taskmanagers tr td", { timeout: TIMEOUT });
  await page.goto(url + "/#/config");
  await page.waitForSelector('#config td:text("rest.port")', { timeout: TIMEOUT });
  assert.deepEqual(errors, [], "no script errors");
  console.log(`dashboard test passed: ${vertices.length} vertices, savepoint at ${location}, screenshot ${screenshot}`);
} finally {
  await browser.close();
}

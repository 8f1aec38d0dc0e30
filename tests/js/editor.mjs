// Uses the ComfyUI editor served by `unidit serve` in headless Chromium, as a person would on a first start.
//
//   node tests/js/editor.mjs URL SCREENSHOT.png QUEUED_WORKFLOW WORKFLOW [WORKFLOW ...]
//
// 1. Opens URL and waits until the editor has started and the first-start template browser shows; records its
//    text and how many of its images loaded (the pack's template thumbnails), then closes it.
// 2. Loads each WORKFLOW from the pack's templates (/api/workflow_templates/unidit/NAME.json) and records the
//    node types the editor reports missing (to its afterConfigureGraph hook), any "Missing node" notice and any
//    dialog that opens.
// 3. Loads QUEUED_WORKFLOW, presses Run, waits until a node shows an output image, fits the graph into view
//    and screenshots the page to SCREENSHOT.png.
// 4. Starts again in a new browser profile, as a later start on another browser: the server remembers that the
//    first start happened, the browser has no workflow to restore. Records the graph the editor opened with.
//
// Meanwhile it records every console error, page error, request that failed or answered 400 or more, and
// request to another origin. Output: one JSON object (see `result` below); exit status 0 even when a step
// failed (the caller asserts), 2 on bad usage or when the browser cannot start. CHROMIUM overrides the browser
// path (default /usr/bin/chromium).
import { launchBrowser } from "./browser.mjs";

const START_MS = 120_000;
const RUN_MS = 600_000;
const [url, screenshot, queued, ...workflows] = process.argv.slice(2);
if (!url || !screenshot || !queued || workflows.length === 0) {
  console.error("usage: node editor.mjs URL SCREENSHOT.png QUEUED_WORKFLOW WORKFLOW [WORKFLOW ...]");
  process.exit(2);
}

const browser = await launchBrowser();

const origin = new URL(url).origin;
const result = {
  started: false, startSeconds: 0, templateBrowser: null, workflows: {}, queued: null, screenshot: null,
  laterStart: null,
  failedRequests: [], unreadBodies: [], otherOrigins: [], consoleErrors: [], pageErrors: [],
  error: null,
};
// Records what goes wrong on a page into result.
function watch(page) {
  page.on("pageerror", (error) => result.pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") result.consoleErrors.push(`${message.text()} (${message.location().url})`);
  });
  page.on("request", (request) => {
    if (!request.url().startsWith(origin) && !/^(data|blob):/.test(request.url())) {
      result.otherOrigins.push(request.url());
    }
  });
  page.on("response", (response) => {
    if (response.status() >= 400) {
      result.failedRequests.push(`${response.request().method()} ${response.url()}: HTTP ${response.status()}`);
    }
  });
  page.on("requestfailed", async (request) => {
    // Chromium cancels a response whose body the page never reads (fire-and-forget POSTs of settings) and
    // reports it as failed although the server answered: those count as answered, with their status.
    const response = await request.response().catch(() => null);
    const line = `${request.method()} ${request.url()}: ${request.failure()?.errorText}`;
    if (response && response.status() < 400) result.unreadBodies.push(`${line} after HTTP ${response.status()}`);
    else if (!response) result.failedRequests.push(line);
  });
  return page;
}

async function openEditor(page) {
  await page.goto(url);
  await page.waitForFunction(() => window.app?.graph && window.app?.canvas && window.app.api?.clientId,
                             null, { timeout: START_MS });
}

// In the page: what the editor shows now.
function shownGraph() {
  const registered = window.LiteGraph?.registered_node_types ?? {};
  const types = window.app.graph.nodes.map((node) => node.type);
  return {
    types,
    unregistered: types.filter((type) => !(type in registered)),
    missingNotice: /missing node/i.test(document.body.innerText),
    dialogs: [...document.querySelectorAll("[role=dialog]")].map((dialog) => dialog.innerText.slice(0, 200)),
  };
}

const page = watch(await browser.newPage({ viewport: { width: 1600, height: 1000 } }));

// In the page: load a workflow of the pack's templates as the template browser does, and report what the
// editor found missing (to its afterConfigureGraph hook).
async function loadTemplate(name) {
  const response = await fetch(`/api/workflow_templates/unidit/${name}.json`);
  if (!response.ok) return { error: `HTTP ${response.status}` };
  const workflow = await response.json();
  const missing = [];
  window.__uniditMissing = missing;
  await window.app.loadGraphData(workflow, true, true, name);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // notices appear after the graph is configured
  return {
    missingNodeTypes: missing.map((entry) => (typeof entry === "string" ? entry : entry.type)),
    nodes: window.app.graph.nodes.length,
    expectedNodes: workflow.nodes.length,
  };
}

// In the page: pairs of nodes, and pairs of groups, whose boxes overlap as the editor draws them: a node's box
// with its title bar, at least as tall and wide as the editor computes it (computeSize) and as the workflow says.
function overlapsInGraph() {
  const title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const meets = (a, b) => a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
  const nodes = window.app.graph.nodes.map((node) => {
    const [width, height] = node.computeSize();
    return { name: `${node.id} ${node.type}`, box: [node.pos[0], node.pos[1] - title, Math.max(width, node.size[0]),
                                                  Math.max(height, node.size[1]) + title] };
  });
  const groups = (window.app.graph.groups ?? window.app.graph._groups ?? []).map((group) => (
    { name: `group ${group.title}`, box: [...(group._bounding ?? group.bounding)] }));
  const found = [];
  for (const list of [nodes, groups]) {
    list.forEach((a, index) => list.slice(index + 1).forEach((b) => {
      if (meets(a.box, b.box)) found.push(`${a.name} [${a.box.map(Math.round)}] / ${b.name} [${b.box.map(Math.round)}]`);
    }));
  }
  return found;
}

async function loadAndLook(name) {
  return { ...(await page.evaluate(loadTemplate, name)), ...(await page.evaluate(shownGraph)),
           overlaps: await page.evaluate(overlapsInGraph) };
}

try {
  const start = performance.now();
  // Tall enough for every template card at once: the browser draws the thumbnails of the cards in view only.
  await page.setViewportSize({ width: 1600, height: 2400 });
  await openEditor(page);
  result.started = true;
  result.startSeconds = (performance.now() - start) / 1000;

  const templates = page.locator("[role=dialog]", { hasText: "Templates" });
  const shown = await templates.waitFor({ timeout: 30_000 }).then(() => true, () => false);
  await page.waitForFunction(() => { // thumbnails arrive, then decode
    const images = [...document.querySelectorAll("[role=dialog] img")];
    return images.length > 0 && images.every((image) => image.complete && image.naturalWidth > 0);
  }, null, { timeout: 20_000 }).catch(() => {}); // what loaded by then is recorded below
  result.templateBrowser = shown && await templates.evaluate((dialog) => ({
    text: dialog.innerText,
    images: [...dialog.querySelectorAll("img")].length,
    loadedImages: [...dialog.querySelectorAll("img")].filter((image) => image.complete && image.naturalWidth > 0)
      .length,
  }));
  await page.setViewportSize({ width: 1600, height: 1000 });
  await page.keyboard.press("Escape");
  await templates.waitFor({ state: "detached", timeout: 10_000 }).catch(() => {});

  await page.evaluate(() => window.app.registerExtension({
    name: "unidit.test.missingNodes",
    afterConfigureGraph(missing) { window.__uniditMissing?.push(...(missing ?? [])); },
  }));
  for (const name of workflows) result.workflows[name] = await loadAndLook(name);

  result.queued = { workflow: queued, ...(await loadAndLook(queued)) };
  const runStart = performance.now();
  await page.getByRole("button", { name: "Run", exact: true }).click();
  const shownNode = await page.waitForFunction(() => { // an output image (previews while sampling are blobs)
    const node = window.app.graph.nodes.find((candidate) => candidate.imgs?.[0]?.src.includes("/view?")
                                                            && candidate.imgs[0].complete
                                                            && candidate.imgs[0].naturalWidth > 0);
    return node && { id: String(node.id), type: node.type, src: node.imgs[0].src,
                     width: node.imgs[0].naturalWidth, height: node.imgs[0].naturalHeight };
  }, null, { timeout: RUN_MS, polling: 250 });
  Object.assign(result.queued, await shownNode.jsonValue(), { seconds: (performance.now() - runStart) / 1000 });
  await page.evaluate(() => window.app.extensionManager.command.execute("Comfy.Canvas.FitView"));
  await page.waitForTimeout(2000); // the view glides there
  await page.screenshot({ path: screenshot });
  result.screenshot = screenshot;
  await page.waitForLoadState("networkidle");
} catch (error) {
  result.error = String(error);
}
await page.close(); // after the page is gone, nothing more is recorded from it

try {
  const later = watch(await browser.newPage({ viewport: { width: 1600, height: 1000 } }));  // a new profile
  await openEditor(later);
  await later.waitForFunction(() => window.app.graph.nodes.length > 0, null, { timeout: 30_000 }).catch(() => {});
  await later.waitForTimeout(1000); // notices appear after the graph is configured
  result.laterStart = await later.evaluate(shownGraph);
  await later.waitForLoadState("networkidle");
  await later.close();
} catch (error) {
  result.error ??= `later start: ${error}`;
}
await browser.close();
console.log(JSON.stringify(result, null, 2));

// Opens pages in headless Chromium, waits until the UniDiT viewer on each has drawn its object, and screenshots
// the viewer's canvas.
//
//   node tests/js/screenshot.mjs URL OUT.png [URL OUT.png ...]
//
// One browser serves all pages. The page must set data-unidit-ready="1" on an element when it has drawn (or
// data-unidit-error="message" when loading failed). Output: a JSON array of {url, out, ready, error, seconds,
// pageErrors, consoleErrors}; exit status 0 even when a page failed (the caller asserts), 2 on bad usage or
// when the browser cannot start. CHROMIUM overrides the browser path (default /usr/bin/chromium).
import { launchBrowser } from "./browser.mjs";

const TIMEOUT_MS = 60_000;
const args = process.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0) {
  console.error("usage: node screenshot.mjs URL OUT.png [URL OUT.png ...]");
  process.exit(2);
}

const browser = await launchBrowser();

const results = [];
for (let i = 0; i < args.length; i += 2) {
  const [url, out] = [args[i], args[i + 1]];
  const result = { url, out, ready: false, error: null, seconds: 0, pageErrors: [], consoleErrors: [] };
  const page = await browser.newPage({ viewport: { width: 512, height: 512 } });
  page.on("pageerror", (error) => result.pageErrors.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") result.consoleErrors.push(message.text());
  });
  const start = performance.now();
  try {
    await page.goto(url);
    const flagged = await page.waitForSelector("[data-unidit-ready='1'], [data-unidit-error]",
                                               { timeout: TIMEOUT_MS });
    result.error = await flagged.getAttribute("data-unidit-error");
    result.ready = result.error === null;
    if (result.ready) await page.locator("[data-unidit-ready='1'] canvas").screenshot({ path: out });
  } catch (error) {
    result.error = String(error);
  }
  result.seconds = (performance.now() - start) / 1000;
  results.push(result);
  await page.close();
}
await browser.close();
console.log(JSON.stringify(results, null, 2));

// Opens pages in headless Chromium, waits until the UniDiT viewer on each has drawn its object, and screenshots
// the viewer's canvas.
//
//   node tests/js/screenshot.mjs URL OUT.png SCALE [URL OUT.png SCALE ...]
//
// SCALE is the display's devicePixelRatio for that page (1: one device pixel per CSS pixel). One browser serves
// all pages. The page must set data-unidit-ready="1" on an element when it has drawn (or
// data-unidit-error="message" when loading failed). Output: a JSON array of {url, out, ready, error, seconds,
// pageErrors, consoleErrors, canvas}, where canvas is the drawn canvas's {width, height} (its drawing buffer),
// {clientWidth, clientHeight} (its CSS size) and {screenWidth, screenHeight} (its CSS size on screen, after CSS
// transforms); exit status 0 even when a page failed (the caller asserts), 2 on bad usage or when the browser
// cannot start. CHROMIUM overrides the browser path (default /usr/bin/chromium).
import { launchBrowser } from "./browser.mjs";

const TIMEOUT_MS = 60_000;
const args = process.argv.slice(2);
if (args.length === 0 || args.length % 3 !== 0 || !args.every((arg, i) => i % 3 !== 2 || Number(arg) > 0)) {
  console.error("usage: node screenshot.mjs URL OUT.png SCALE [URL OUT.png SCALE ...]");
  process.exit(2);
}

const browser = await launchBrowser();

const results = [];
for (let i = 0; i < args.length; i += 3) {
  const [url, out, scale] = [args[i], args[i + 1], Number(args[i + 2])];
  const result = { url, out, ready: false, error: null, seconds: 0, pageErrors: [], consoleErrors: [], canvas: null };
  // Room for a viewer zoomed 2x by a CSS transform (the viewer's buffer never has more pixels than the window).
  const page = await browser.newPage({ viewport: { width: 1024, height: 1024 }, deviceScaleFactor: scale });
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
    if (result.ready) {
      const canvas = page.locator("[data-unidit-ready='1'] canvas");
      result.canvas = await canvas.evaluate((element) => {
        const box = element.getBoundingClientRect();
        return { width: element.width, height: element.height, clientWidth: element.clientWidth,
                 clientHeight: element.clientHeight, screenWidth: box.width, screenHeight: box.height };
      });
      await canvas.screenshot({ path: out });
    }
  } catch (error) {
    result.error = String(error);
  }
  result.seconds = (performance.now() - start) / 1000;
  results.push(result);
  await page.close();
}
await browser.close();
console.log(JSON.stringify(results, null, 2));

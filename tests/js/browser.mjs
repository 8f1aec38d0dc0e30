// Headless Chromium for the browser tests, started the same way by every script of tests/js: software WebGL
// (SwiftShader), no sandbox (CI runs as root), no background traffic. CHROMIUM overrides the browser path
// (default /usr/bin/chromium). Exits the process with status 2 when the browser cannot start.
import { chromium } from "playwright-core";

export async function launchBrowser() {
  try {
    return await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
             "--disable-background-networking"],
    });
  } catch (error) {
    console.error(`cannot start Chromium: ${error.message}`);
    process.exit(2);
  }
}

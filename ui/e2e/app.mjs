// The desktop app under WebDriver, shared by the end-to-end tests (not a test file itself):
// tauri-driver, a session on the app, and reading its cards.

import { spawn } from "node:child_process";

import { remote } from "webdriverio";

import { until } from "./wait.mjs";

/** A variable scripts/desktop-test.sh sets; the test cannot run without it. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/desktop-test.sh)`);
  return v;
}

/** Starts tauri-driver on `port` (its WebKitWebDriver on the next one) and waits for it. */
export async function startDriver(port, stderr = "ignore") {
  const driver = spawn("tauri-driver", ["--port", String(port), "--native-port", String(port + 1)], {
    stdio: ["ignore", "ignore", stderr],
  });
  await until("tauri-driver", async () => {
    try {
      return (await fetch(`http://127.0.0.1:${port}/status`)).ok;
    } catch {
      return false;
    }
  });
  return driver;
}

/** Starts the app `application` through the driver on `port`; answers once its window is up. */
export async function launchApp(port, application) {
  const browser = await remote({
    hostname: "127.0.0.1",
    port,
    logLevel: "error",
    connectionRetryCount: 0,
    capabilities: {
      browserName: "wry",
      "wdio:enforceWebDriverClassic": true,
      "tauri:options": { application },
    },
  });
  await until("the main window", async () => (await browser.$("[data-testid=autorecover]")).isExisting());
  return browser;
}

/** The card of the account named `name`, as an XPath. */
export const cardSel = (name) => `//article[.//h3[normalize-space(.)="${name}"]]`;

/** The state a card shows (`null`: no such card). */
export async function cardStateIn(browser, name) {
  const el = await browser.$(cardSel(name));
  return (await el.isExisting()) ? el.getAttribute("data-state") : null;
}

// The installed package, driven like the operator would: run by scripts/package-test.sh with
// LIFELINE_INSTALLED_APP=/usr/bin/lifeline-desktop under Xvfb (skipped otherwise). Settings →
// About shows the version `lifeline --version` prints; the start-at-login switch writes and
// removes the desktop's autostart entry for the installed binary; it is off by default.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { launchApp, startDriver } from "./app.mjs";
import { until } from "./wait.mjs";

const APP = process.env.LIFELINE_INSTALLED_APP;
const skip = APP ? false : "set LIFELINE_INSTALLED_APP (scripts/package-test.sh)";
const DRIVER_PORT = 4448;
const AUTOSTART = join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "autostart", "Lifeline.desktop");
let driver = null;
let browser = null;

before(async () => {
  if (skip) return;
  process.env.LIFELINE_DATA_DIR ??= mkdtempSync(join(tmpdir(), "lifeline-installed-"));
  driver = await startDriver(DRIVER_PORT);
  browser = await launchApp(DRIVER_PORT, APP);
});

after(async () => {
  try {
    await browser?.deleteSession();
  } catch {
    // The app may already be gone.
  }
  driver?.kill();
});

test("the installed app shows its version and starts at login only when asked", { skip }, async () => {
  const version = execFileSync("lifeline", ["--version"], { encoding: "utf8" }).trim();
  await browser.$("button=Settings").click();
  const about = await until("the About section", async () => {
    const el = await browser.$("[data-testid=about]");
    return (await el.isExisting()) && (await el.getText());
  });
  assert.ok(about.includes(version.replace(/^lifeline/, "Lifeline")), `About says: ${about}`);

  const toggle = await browser.$("input[name=start_at_login]");
  assert.equal(await toggle.isSelected(), false, "start at login is off by default");
  assert.ok(!existsSync(AUTOSTART), `${AUTOSTART} exists before it was asked for`);
  await toggle.click();
  await until("the autostart entry", () => existsSync(AUTOSTART));
  const entry = readFileSync(AUTOSTART, "utf8");
  assert.match(entry, new RegExp(`^Exec=.*${APP.replace(/[/.]/g, "\\$&")}`, "m"), entry);
  // Started at login, it knows (and can stay in the tray when the operator asked for that).
  assert.match(entry, /^Exec=.* --autostarted$/m, entry);
  await toggle.click();
  await until("the autostart entry to go", () => !existsSync(AUTOSTART));
});

// End-to-end: the desktop as a fleet's console. A real PostgreSQL (a throwaway cluster with
// password authentication) holds the fleet store; one `lifeline serve --store` instance
// supervises WebSocket accounts on lifeline-sim. The real desktop binary, under Xvfb through
// tauri-driver and WebKitWebDriver, connects to the fleet from Settings (a wrong password is
// refused first), shows which instance holds each card, lists the instance in the fleet view,
// stops and starts an account through the instance, remembers the fleet across a restart
// (the password from the keyring), and leaves it again. Run by scripts/desktop-test.sh.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { cardSel, cardStateIn, env, launchApp, startDriver } from "./app.mjs";
import { axeViolations } from "./axe.mjs";
import { startPostgres } from "./postgres.mjs";
import { until } from "./wait.mjs";

const APP = env("LIFELINE_DESKTOP_BIN");
const CLI = env("LIFELINE_BIN");
const NOTIFY_LOG = env("NOTIFY_LOG");
const SHOTS = process.env.SCREENSHOT_DIR;
const SIM = env("LIFELINE_SIM_BIN");
const SIM_PORT = 20400 + Math.floor(Math.random() * 500);
const CONTROL_PORT = SIM_PORT + 1000;
const DRIVER_PORT = 4444;
const PASSWORD = "console-e2e-password";
// The instance reads the store's password from a secret of its own name, so the console's
// connection can only work with the password typed into Settings (kept under store-password).
const SERVE_SECRET = "serve-store-password";
const DESK = mkdtempSync(join(tmpdir(), "lifeline-console-e2e-"));
const HOST = mkdtempSync(join(tmpdir(), "lifeline-fleet-host-"));

const children = [];
let browser = null;
let pg = null;
let url = null;
let instance = null;

/** The CLI on the fleet host (its own data dir), against the fleet store. */
function fleetCli(args, input) {
  return execFileSync(CLI, ["--store", url, "--password-secret", SERVE_SECRET, ...args], {
    env: { ...process.env, LIFELINE_DATA_DIR: HOST },
    encoding: "utf8",
    input,
  });
}

const accounts = () => JSON.parse(fleetCli(["account", "list", "--json"]));

async function control(path) {
  const r = await fetch(`http://127.0.0.1:${CONTROL_PORT}${path}`, { method: "POST" });
  assert.ok(r.ok, `sim control ${path}: ${r.status}`);
}

async function launch() {
  browser = await launchApp(DRIVER_PORT, APP);
}

/** Ends the session (the driver ends the app) and waits until the app is gone. */
async function close() {
  await browser.deleteSession();
  browser = null;
  await until("the app to exit", () => {
    try {
      execFileSync("pgrep", ["-f", APP]);
      return false;
    } catch {
      return true;
    }
  });
}

/** The window as the operator sees it (docs/screenshots, with SCREENSHOTS=1). */
async function shot(name) {
  if (!SHOTS) return;
  await browser.saveScreenshot(join(SHOTS, `${name}.png`));
}

const cardState = (name) => cardStateIn(browser, name);

async function ownerOf(name) {
  const el = await browser.$(`${cardSel(name)}//*[@data-testid="owner"]`);
  return (await el.isExisting()) ? el.getProperty("textContent") : null;
}

/** Waits until the card names the instance `pid` as its supervisor. */
const heldBy = (name, pid) =>
  until(`${name} held by pid ${pid}`, async () => new RegExp(`pid ${pid}\\b`).test((await ownerOf(name)) ?? ""));

async function openSettings() {
  await browser.$("[data-testid=open-settings]").click();
  await until("Settings' fleet section", async () => (await browser.$("[data-testid=fleet-settings]")).isExisting());
}

before(async () => {
  pg = await startPostgres(PASSWORD);
  pg.psql("postgres", "CREATE DATABASE fleet");
  url = pg.url("fleet");
  const sim = spawn(SIM, ["--listen", `127.0.0.1:${SIM_PORT}`, "--control", `127.0.0.1:${CONTROL_PORT}`], {
    stdio: "ignore",
  });
  children.push(sim);
  await until("lifeline-sim", async () => (await fetch(`http://127.0.0.1:${CONTROL_PORT}/stats`)).ok);
  execFileSync(CLI, ["secret", "set", SERVE_SECRET], {
    env: { ...process.env, LIFELINE_DATA_DIR: HOST },
    input: PASSWORD,
  });
  // Alerts after 3 s instead of a minute: the fleet's policy, which the console reads too.
  fleetCli(["policy", "set", "alerts.grace_s=3"]);
  for (const name of ["Shop A", "Shop B", "Shop C"]) {
    fleetCli(["account", "add", "--kind", "websocket", "--name", name, "--url", `ws://127.0.0.1:${SIM_PORT}/s/${name.replace(" ", "-")}`]);
  }
  instance = spawn(CLI, ["--store", url, "--password-secret", SERVE_SECRET, "serve"], {
    env: { ...process.env, LIFELINE_DATA_DIR: HOST },
    stdio: ["ignore", "ignore", process.env.E2E_APP_LOG ? "inherit" : "ignore"],
  });
  children.push(instance);
  await until("the instance to connect every account", () => accounts().every((a) => a.state.state === "connected"), 30_000);
  children.push(await startDriver(DRIVER_PORT, process.env.E2E_APP_LOG ? "inherit" : "ignore"));
  // The desktop on another computer's data dir: nothing of its own to supervise.
  process.env.LIFELINE_DATA_DIR = DESK;
  delete process.env.LIFELINE_STORE;
  await launch();
});

after(async () => {
  if (browser) {
    try {
      await close();
    } catch {
      // best effort
    }
  }
  // The instance first, while its store is up: it hands its leases back on the way out.
  if (instance && instance.exitCode === null) {
    const exited = new Promise((resolve) => instance.once("exit", resolve));
    instance.kill();
    const late = setTimeout(() => instance.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(late);
  }
  for (const c of children) c.kill();
  pg?.stop();
});

test("Settings connects to the fleet with the password, refusing a wrong one first", async () => {
  assert.ok(await browser.$("[data-testid=welcome]").isExisting(), "no accounts of its own");
  await openSettings();
  const form = await browser.$("[data-testid=fleet-form]");
  await form.$("input[name=fleet-url]").setValue(url);
  await form.$("input[name=fleet-password]").setValue("not-the-password");
  await form.$("[data-testid=fleet-connect]").click();
  const error = await browser.$("[data-testid=fleet-error]");
  await until("the refusal", () => error.isExisting());
  assert.match(await error.getText(), /wrong or missing password/);
  assert.ok(await browser.$("[data-testid=fleet-form]").isExisting(), "still this computer's own");

  await form.$("input[name=fleet-password]").setValue(PASSWORD);
  await form.$("[data-testid=fleet-connect]").click();
  // The window reloads into the fleet's cards.
  await until("the fleet's cards", async () => (await cardState("Shop C")) === "connected", 30_000);
  for (const name of ["Shop A", "Shop B", "Shop C"]) {
    assert.equal(await cardState(name), "connected");
    await heldBy(name, instance.pid);
  }
});

test("the fleet view lists the instance with its accounts and heartbeat", async () => {
  await browser.$("[data-testid=open-fleet]").click();
  const row = await browser.$(`[data-testid=instance][data-pid="${instance.pid}"]`);
  await until("the instance's row", () => row.isExisting());
  assert.equal(await row.getAttribute("data-alive"), "true");
  assert.equal(await row.$("[data-testid=instance-leases]").getText(), "3");
  assert.match(await browser.$("[data-testid=fleet-summary]").getText(), /1 of 1 instances alive · 3 of 3 accounts supervised/);
  await browser.setTimeout({ script: 60_000 });
  const found = (await axeViolations(browser)).map((v) => `fleet view: ${v}`);
  await shot("fleet-view");
  await browser.$("button*=Back").click();
  await until("the cards", async () => (await cardState("Shop A")) === "connected");
  found.push(...(await axeViolations(browser)).map((v) => `console cards: ${v}`));
  await shot("fleet-console");
  await openSettings();
  found.push(...(await axeViolations(browser)).map((v) => `console settings: ${v}`));
  await browser.$("button*=Back").click();
  assert.deepEqual(found, [], found.join("\n"));
});

test("Stop and Start on a card reach the instance that holds the account", async () => {
  await browser.$(`${cardSel("Shop B")}//button[@data-action="stop"]`).click();
  await until("Shop B stopped by its instance", () => {
    const b = accounts().find((a) => a.name === "Shop B");
    return !b.desired_running && b.state.state === "stopped";
  });
  await until("the card to say Stopped", async () => (await cardState("Shop B")) === "stopped");
  assert.equal(await cardState("Shop A"), "connected", "the others untouched");
  await browser.$(`${cardSel("Shop B")}//button[@data-action="start"]`).click();
  await until("Shop B connected again", async () => (await cardState("Shop B")) === "connected");
  assert.equal(accounts().find((a) => a.name === "Shop B").state.state, "connected");
});

test("a drop the instance does not recover within the grace period notifies on the console", async () => {
  await control("/refuse?secs=30");
  await control("/drop?path=/s/Shop-C");
  await until("the card to show the recovery", async () => (await cardState("Shop C")) !== "connected");
  const log = await until(
    "a Notify call on D-Bus",
    () => {
      const text = readFileSync(NOTIFY_LOG, "utf8");
      return text.includes("Shop C is down") && text;
    },
    30_000,
  );
  assert.match(log, /member=Notify/);
  assert.ok(!log.includes("Shop A is down"), "only the account that dropped");
  await control("/refuse?secs=0");
  await until("Shop C connected again", async () => (await cardState("Shop C")) === "connected", 60_000);
});

test("the console comes back after a restart, with the password from the keyring", async () => {
  await close();
  await launch();
  await until("the fleet's cards again", async () => (await cardState("Shop A")) === "connected", 30_000);
  await heldBy("Shop A", instance.pid);
});

test("leaving the fleet goes back to this computer's own accounts, and the fleet runs on", async () => {
  await openSettings();
  await browser.$("[data-testid=fleet-disconnect]").click();
  await until("this computer's own (empty) fleet", () => browser.$("[data-testid=welcome]").isExisting());
  assert.equal(await browser.$("[data-testid=open-fleet]").isExisting(), false);
  assert.ok(accounts().every((a) => a.state.state === "connected"), "the instance still supervises");
});

test("connecting again with the password field empty uses the password kept in the keyring", async () => {
  await openSettings();
  const form = await browser.$("[data-testid=fleet-form]");
  await form.$("input[name=fleet-url]").setValue(url);
  await form.$("[data-testid=fleet-connect]").click();
  await until("the fleet's cards", async () => (await cardState("Shop A")) === "connected", 30_000);
  await heldBy("Shop A", instance.pid);
});

// The Backend over Tauri IPC. Command and event names come from the generated names module.

import { Channel, invoke } from "@tauri-apps/api/core";
import { listen } from "@tauri-apps/api/event";

import { type Backend, BackendError, type FleetDelta, type Unsubscribe } from "./backend";
import { Command, Event } from "./generated/names";

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw BackendError.from(e);
  }
}

function on<T>(event: string, cb: (payload: T) => void): Unsubscribe {
  let stop: (() => void) | null = null;
  let cancelled = false;
  void listen<T>(event, (e) => cb(e.payload)).then((un) => {
    if (cancelled) un();
    else stop = un;
  });
  return () => {
    cancelled = true;
    stop?.();
  };
}

/** Card changes come through a channel (large deltas travel without being evaluated as script). */
function watchFleet(cb: (d: FleetDelta) => void): Unsubscribe {
  let live = true;
  const channel = new Channel<FleetDelta>();
  channel.onmessage = (d) => live && cb(d);
  void call(Command.watchFleet, { onDelta: channel });
  return () => {
    live = false;
  };
}

export function tauriBackend(): Backend {
  return {
    snapshot: () => call(Command.fleetSnapshot),
    addAccount: (input) => call(Command.addAccount, { input }),
    removeAccount: (id) => call(Command.removeAccount, { id }),
    start: (id) => call(Command.startAccount, { id }),
    stop: (id) => call(Command.stopAccount, { id }),
    retry: (id) => call(Command.retryAccount, { id }),
    resetBreaker: (id) => call(Command.resetBreaker, { id }),
    setMuted: (id, muted) => call(Command.setMuted, { id, muted }),
    setNotifyLive: (id, on) => call(Command.setNotifyLive, { id, on }),
    relink: (id, link) => call(Command.relinkAccount, { id, link }),
    startAll: () => call(Command.startAll),
    stopAll: () => call(Command.stopAll),
    checkAll: () => call(Command.checkAll),
    setAutorecover: (on) => call(Command.setAutorecover, { on }),
    history: (id, window) => call(Command.accountHistory, { id, window }),
    getPolicy: () => call(Command.getPolicy),
    setPolicy: (values) => call(Command.setPolicy, { values }),
    policyPresets: () => call(Command.policyPresets),
    listSecrets: () => call(Command.listSecrets),
    setSecret: (name, value) => call(Command.setSecret, { name, value }),
    deleteSecret: (name) => call(Command.deleteSecret, { name }),
    chooseExportPath: (what) => call(Command.chooseExportPath, { what }),
    exportCsv: (request) => call(Command.exportCsv, { request }),
    getPrefs: () => call(Command.getPrefs),
    setPrefs: (prefs) => call(Command.setPrefs, { prefs }),
    quit: () => call(Command.quit),
    notify: (text) => call(Command.notify, { text }),
    setTrayLabels: (labels) => call(Command.setTrayLabels, { labels }),
    listWebhooks: () => call(Command.listWebhooks),
    addWebhook: (input) => call(Command.addWebhook, { input }),
    removeWebhook: (id) => call(Command.removeWebhook, { id }),
    setWebhookEnabled: (id, enabled) => call(Command.setWebhookEnabled, { id, enabled }),
    testWebhook: (id) => call(Command.testWebhook, { id }),
    rotateWebhookSecret: (id) => call(Command.rotateWebhookSecret, { id }),
    webhookDeliveries: (id, limit) => call(Command.webhookDeliveries, { id, limit }),
    replayDelivery: (id) => call(Command.replayDelivery, { id }),
    connection: () => call(Command.connection),
    connectFleet: (input) => call(Command.connectFleet, { input }),
    disconnectFleet: () => call(Command.disconnectFleet),
    fleetStatus: () => call(Command.fleetStatus),
    onFleet: (cb) => watchFleet(cb),
    onLink: (cb) => on(Event.link, cb),
    onAlert: (cb) => on(Event.alert, cb),
    onExportProgress: (cb) => on(Event.exportProgress, cb),
    onSettings: (cb) => on(Event.settings, cb),
    onWebhookOff: (cb) => on(Event.webhookOff, cb),
  };
}

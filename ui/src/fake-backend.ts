// An in-memory Backend for tests (and for trying views without the shell). It behaves like the
// shell where the views can tell: commands change cards and the change arrives as a fleet event.

import { type Backend, BackendError, DEFAULT_PREFS, type Unsubscribe } from "./backend";
import type {
  AlertInfo,
  Card,
  DeliveryInfo,
  ExportProgress,
  FleetConnectInput,
  FleetDelta,
  FleetStatus,
  HistoryInfo,
  LinkInfo,
  NotificationText,
  PolicyValues,
  PresetInfo,
  Prefs,
  SettingsChanged,
  Snapshot,
  StateName,
  TrayLabels,
  NewWebhookInput,
  WebhookInfo,
  WebhookOff,
  WebhookSecret,
} from "./generated/api";

type Listener<T> = Set<(v: T) => void>;

export function makeCard(id: number, over: Partial<Card> = {}): Card {
  return {
    id,
    name: `Account ${id}`,
    kind: "websocket",
    target: `ws://127.0.0.1:9000/s/${id}`,
    country: null,
    priority: 100,
    desired: true,
    muted: false,
    notify_live: false,
    state: "connected",
    reason: null,
    retry_at: null,
    attempt: null,
    paused_until: null,
    since: "2026-11-23T10:00:00.000Z",
    reconnects: 0,
    breaker: "closed",
    uptime_pct: 99.5,
    score: 98,
    failures_1h: 0,
    unstable_until: null,
    remote_id: null,
    remote_name: null,
    owner: null,
    ...over,
  };
}

/** The engine's defaults (`lifeline policy show`). */
export const DEFAULT_POLICY: PolicyValues = {
  alerts: { grace_s: 60, summary_threshold: 5, flap_drops: 5, flap_window_s: 600 },
  autorecover: { start_delay_ms: 2000, concurrency: 32 },
  backoff: {
    base_ms: 1000,
    cap_ms: 300000,
    floor_timeout_ms: 5000,
    floor_refused_ms: 2000,
    floor_closed_ms: 500,
    floor_network_ms: 2000,
    floor_rate_limited_ms: 60000,
  },
  breaker: { threshold: 10, window_s: 300, cooldown_s: 600, max_cooldown_s: 3600 },
  connection: {
    connect_timeout_ms: 15000,
    keepalive_ms: 15000,
    pong_timeout_ms: 10000,
    close_timeout_ms: 3000,
    reconcile_interval_ms: 30000,
    stable_after_ms: 60000,
    direct_fallback: false,
  },
  pacing: { enabled: true, rate_per_s: 2, burst: 5 },
};

/** The engine's presets, as `policy_presets` answers. */
export const PRESETS: PresetInfo[] = [
  {
    name: "careful",
    values: {
      autorecover: { concurrency: 8 },
      backoff: { base_ms: 5000, cap_ms: 900000, floor_rate_limited_ms: 300000 },
      breaker: { threshold: 5, window_s: 600, cooldown_s: 1800, max_cooldown_s: 14400 },
      pacing: { rate_per_s: 0.5, burst: 2 },
    },
  },
  {
    name: "balanced",
    values: {
      autorecover: { concurrency: 32 },
      backoff: { base_ms: 1000, cap_ms: 300000, floor_rate_limited_ms: 60000 },
      breaker: { threshold: 10, window_s: 300, cooldown_s: 600, max_cooldown_s: 3600 },
      pacing: { rate_per_s: 2, burst: 5 },
    },
  },
  {
    name: "fast",
    values: {
      autorecover: { concurrency: 64 },
      backoff: { base_ms: 500, cap_ms: 60000, floor_rate_limited_ms: 30000 },
      breaker: { threshold: 20, window_s: 300, cooldown_s: 300, max_cooldown_s: 1800 },
      pacing: { rate_per_s: 10, burst: 20 },
    },
  },
];

export class FakeBackend implements Backend {
  cards = new Map<number, Card>();
  autorecover = true;
  version = "0.1.0";
  dataDir = "/tmp/lifeline";
  /** The fleet store this computer is a console of (`null`: its own accounts). */
  fleetStore: string | null = null;
  /** The password the fake fleet store accepts. */
  fleetPassword = "right";
  /** The password this computer's keyring keeps for the fleet store. */
  keptPassword = "";
  fleet_: FleetStatus = {
    url: "",
    accounts: 0,
    leases_held: 0,
    live_instances: 0,
    takeovers: 0,
    renew_failures: 0,
    stale_writes_refused: 0,
    instances: [],
  };
  secrets: string[] = [];
  policy: PolicyValues = structuredClone(DEFAULT_POLICY);
  prefs: Prefs = { ...DEFAULT_PREFS };
  webhooks = new Map<number, WebhookInfo>();
  deliveries: DeliveryInfo[] = [];
  /** The HTTP status the fake receiver answers a test message with. */
  receiverAnswers = 204;
  calls: Array<[string, ...unknown[]]> = [];
  exportPath: string | null = "/tmp/export.csv";
  history_: HistoryInfo = { since: "", now: "", intervals: [], events: [], lives: [] };
  /** Set to make the next command fail with this error. */
  failNext: BackendError | null = null;
  private nextId = 1;
  /** How many times the fleet was read (snapshots and deltas), as the shell counts. */
  private reads = 0;
  private fleet: Listener<FleetDelta> = new Set();
  private link: Listener<LinkInfo> = new Set();
  private alert: Listener<AlertInfo> = new Set();
  private progress: Listener<ExportProgress> = new Set();
  private settings: Listener<SettingsChanged> = new Set();
  private webhookOff: Listener<WebhookOff> = new Set();
  private nextHook = 1;
  private secretNo = 0;

  constructor(cards: Card[] = []) {
    for (const c of cards) {
      this.cards.set(c.id, c);
      this.nextId = Math.max(this.nextId, c.id + 1);
    }
  }

  private async act<T>(name: string, args: unknown[], f: () => T): Promise<T> {
    this.calls.push([name, ...args]);
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = null;
      throw e;
    }
    return f();
  }

  private card(id: number): Card {
    const c = this.cards.get(id);
    if (!c) throw new BackendError("not_found", `No account with id ${id}.`);
    return c;
  }

  /** Changes a card as the engine would and tells the listeners. */
  set(id: number, over: Partial<Card>) {
    const c = { ...this.card(id), ...over };
    this.cards.set(id, c);
    this.emitFleet({ cards: [c], removed: [] });
  }

  setState(id: number, state: StateName, reason: Card["reason"] = null) {
    this.set(id, { state, reason });
  }

  /** A delta read now (the next `seq`), or one with its own `seq` (crossing a snapshot). */
  emitFleet(d: Omit<FleetDelta, "seq"> & { seq?: number }) {
    const delta = { ...d, seq: d.seq ?? ++this.reads };
    this.fleet.forEach((f) => f(delta));
  }
  emitLink(l: LinkInfo) {
    this.link.forEach((f) => f(l));
  }
  emitAlert(a: AlertInfo) {
    this.alert.forEach((f) => f(a));
  }
  emitSettings(s: SettingsChanged) {
    this.settings.forEach((f) => f(s));
  }
  /** The sender turns an endpoint off, as the shell reports it. */
  emitWebhookOff(w: WebhookOff) {
    const e = this.webhooks.get(w.endpoint);
    if (e) this.webhooks.set(w.endpoint, { ...e, enabled: false, disabled_reason: w.reason });
    this.webhookOff.forEach((f) => f(w));
  }

  private hook(id: number): WebhookInfo {
    const e = this.webhooks.get(id);
    if (!e) throw new BackendError("not_found", `No webhook endpoint ${id}: see the list of endpoints.`);
    return e;
  }
  private secret(): string {
    this.secretNo += 1;
    return `whsec_${btoa(`fake-secret-${this.secretNo}-0123456789abcdef`)}`;
  }
  private delivery(endpoint: number, kind: string, over: Partial<DeliveryInfo> = {}): DeliveryInfo {
    const d: DeliveryInfo = {
      id: this.deliveries.length + 1,
      endpoint_id: endpoint,
      kind,
      account: null,
      at: "2026-11-23T10:00:00.000Z",
      state: "pending",
      attempts: 0,
      last_code: null,
      last_error: null,
      next_at: "2026-11-23T10:00:00.000Z",
      ...over,
    };
    this.deliveries.unshift(d);
    return d;
  }

  snapshot(): Promise<Snapshot> {
    return this.act("snapshot", [], () => ({
      seq: ++this.reads,
      cards: [...this.cards.values()].sort((a, b) => b.priority - a.priority || a.id - b.id),
      autorecover: this.autorecover,
      previous_run_crashed: false,
      restoring: 0,
      held_stopped: 0,
      data_dir: this.dataDir,
      fleet_store: this.fleetStore,
      version: this.version,
    }));
  }

  addAccount(input: Parameters<Backend["addAccount"]>[0]) {
    return this.act("addAccount", [input], () => {
      if (!input.name.trim()) {
        throw new BackendError(
          "invalid_input",
          'Account name is empty. Give the account a name, e.g. --name "Shop A".',
        );
      }
      const id = this.nextId++;
      const c = makeCard(id, {
        name: input.name.trim(),
        kind: input.kind,
        target: input.url ?? "WhatsApp",
        state: input.kind === "whatsapp" ? "linking" : "connecting",
        desired: input.kind !== "whatsapp",
        uptime_pct: null,
        score: null,
      });
      this.cards.set(id, c);
      this.emitFleet({ cards: [c], removed: [] });
      return c;
    });
  }

  removeAccount(id: number) {
    return this.act("removeAccount", [id], () => {
      this.card(id);
      this.cards.delete(id);
      this.emitFleet({ cards: [], removed: [id] });
    });
  }

  start(id: number) {
    return this.act("start", [id], () => this.set(id, { desired: true, state: "connected", reason: null }));
  }
  stop(id: number) {
    return this.act("stop", [id], () =>
      this.set(id, {
        desired: false,
        state: "stopped",
        reason: { code: "operator", status: null, close_code: null, until: null },
      }),
    );
  }
  retry(id: number) {
    return this.act("retry", [id], () => this.set(id, { state: "connecting", reason: null }));
  }
  resetBreaker(id: number) {
    return this.act("resetBreaker", [id], () => this.set(id, { breaker: "closed" }));
  }
  setMuted(id: number, muted: boolean) {
    return this.act("setMuted", [id, muted], () => this.set(id, { muted }));
  }

  setNotifyLive(id: number, on: boolean) {
    return this.act("setNotifyLive", [id, on], () => this.set(id, { notify_live: on }));
  }
  relink(id: number, link: Parameters<Backend["relink"]>[1]) {
    return this.act("relink", [id, link], () => this.set(id, { state: "linking", desired: true }));
  }
  startAll() {
    return this.act("startAll", [], () => {
      for (const id of this.cards.keys()) this.set(id, { desired: true, state: "connected" });
    });
  }
  stopAll() {
    return this.act("stopAll", [], () => {
      for (const id of this.cards.keys()) this.set(id, { desired: false, state: "stopped" });
    });
  }
  checkAll() {
    return this.act("checkAll", [], () => undefined);
  }
  setAutorecover(on: boolean) {
    return this.act("setAutorecover", [on], () => (this.autorecover = on));
  }
  history(id: number, window: "24h" | "7d") {
    return this.act("history", [id, window], () => {
      this.card(id);
      return this.history_;
    });
  }
  getPolicy() {
    return this.act("getPolicy", [], () => structuredClone(this.policy));
  }
  setPolicy(values: PolicyValues) {
    return this.act("setPolicy", [values], () => {
      const rate = values.pacing?.rate_per_s;
      if (typeof rate === "number" && rate <= 0) {
        throw new BackendError(
          "invalid_input",
          "Invalid policy value: pacing.rate_per_s must be greater than 0.",
        );
      }
      const { base_ms, cap_ms } = values.backoff ?? {};
      if (typeof base_ms === "number" && typeof cap_ms === "number" && cap_ms < base_ms) {
        throw new BackendError("invalid_input", "Invalid policy value: backoff.cap_ms must be at least backoff.base_ms");
      }
      this.policy = structuredClone(values);
      return structuredClone(values);
    });
  }
  policyPresets() {
    return this.act("policyPresets", [], () => structuredClone(PRESETS));
  }
  listSecrets() {
    return this.act("listSecrets", [], () => [...this.secrets]);
  }
  setSecret(name: string, value: string) {
    // The value is deliberately not recorded in `calls`.
    return this.act("setSecret", [name, value.length > 0 ? "<value>" : ""], () => {
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
        throw new BackendError("invalid_input", `'${name}' is not a valid secret name.`);
      }
      if (!this.secrets.includes(name)) this.secrets = [...this.secrets, name].sort();
    });
  }
  deleteSecret(name: string) {
    return this.act("deleteSecret", [name], () => {
      this.secrets = this.secrets.filter((s) => s !== name);
    });
  }
  chooseExportPath(what: "sessions" | "events") {
    return this.act("chooseExportPath", [what], () => {
      if (!this.exportPath) throw new BackendError("cancelled", "Export cancelled.");
      return this.exportPath;
    });
  }
  exportCsv(request: Parameters<Backend["exportCsv"]>[0]) {
    return this.act("exportCsv", [request], () => {
      this.progress.forEach((f) => f({ rows: 10000, done: false }));
      this.progress.forEach((f) => f({ rows: 12345, done: true }));
      return { rows: 12345, path: request.path };
    });
  }
  getPrefs() {
    return this.act("getPrefs", [], () => ({ ...this.prefs }));
  }
  setPrefs(prefs: Prefs) {
    return this.act("setPrefs", [prefs], () => (this.prefs = { ...prefs }));
  }
  quit() {
    return this.act("quit", [], () => undefined);
  }
  notify(text: NotificationText) {
    return this.act("notify", [text], () => undefined);
  }
  setTrayLabels(labels: TrayLabels) {
    return this.act("setTrayLabels", [labels], () => undefined);
  }

  listWebhooks() {
    return this.act("listWebhooks", [], () => [...this.webhooks.values()]);
  }
  addWebhook(input: NewWebhookInput) {
    return this.act("addWebhook", [input], (): WebhookSecret => {
      if (!/^https?:\/\/[^/\s]+/.test(input.url)) {
        throw new BackendError("invalid_input", `Invalid webhook URL '${input.url}': use http:// or https://.`);
      }
      const endpoint: WebhookInfo = {
        id: this.nextHook++,
        url: input.url,
        events: input.events.length ? [...input.events] : null,
        accounts: null,
        enabled: true,
        disabled_reason: null,
        failing_since: null,
      };
      this.webhooks.set(endpoint.id, endpoint);
      return { endpoint, secret: this.secret() };
    });
  }
  removeWebhook(id: number) {
    return this.act("removeWebhook", [id], () => {
      this.hook(id);
      this.webhooks.delete(id);
    });
  }
  setWebhookEnabled(id: number, enabled: boolean) {
    return this.act("setWebhookEnabled", [id, enabled], () => {
      const e = { ...this.hook(id), enabled, disabled_reason: enabled ? null : "turned off by the operator" };
      this.webhooks.set(id, e);
      return e;
    });
  }
  testWebhook(id: number) {
    return this.act("testWebhook", [id], () => {
      this.hook(id);
      const ok = this.receiverAnswers >= 200 && this.receiverAnswers < 300;
      return this.delivery(id, "webhook.test", {
        state: ok ? "delivered" : "failed",
        attempts: 1,
        last_code: this.receiverAnswers,
        next_at: null,
      });
    });
  }
  rotateWebhookSecret(id: number) {
    return this.act("rotateWebhookSecret", [id], () => ({ endpoint: this.hook(id), secret: this.secret() }));
  }
  webhookDeliveries(id: number, limit: number) {
    return this.act("webhookDeliveries", [id, limit], () => {
      this.hook(id);
      return this.deliveries.filter((d) => d.endpoint_id === id).slice(0, limit);
    });
  }
  replayDelivery(id: number) {
    return this.act("replayDelivery", [id], () => {
      const i = this.deliveries.findIndex((d) => d.id === id);
      if (i < 0) throw new BackendError("not_found", `No delivery ${id}.`);
      const d: DeliveryInfo = { ...this.deliveries[i], state: "pending", attempts: 0, next_at: "2026-11-23T10:00:05.000Z" };
      this.deliveries[i] = d;
      return d;
    });
  }

  connection() {
    return this.act("connection", [], () => ({ fleet_store: this.fleetStore, from_environment: false }));
  }

  connectFleet(input: FleetConnectInput) {
    return this.act("connectFleet", [input.url], () => {
      if (!input.url.startsWith("postgres://")) {
        throw new BackendError(
          "invalid_input",
          `not a PostgreSQL store URL (${input.url}); expected postgres://user@host[:port]/database`,
        );
      }
      // An empty field uses the password kept in the keyring.
      const password = input.password || this.keptPassword;
      if (password !== this.fleetPassword) {
        throw new BackendError("storage", "the fleet store at db refused user ops: wrong or missing password");
      }
      this.keptPassword = password;
      this.fleetStore = input.url;
      return { fleet_store: this.fleetStore, from_environment: false };
    });
  }

  disconnectFleet() {
    return this.act("disconnectFleet", [], () => {
      this.fleetStore = null;
      return { fleet_store: null, from_environment: false };
    });
  }

  fleetStatus() {
    return this.act("fleetStatus", [], () => {
      if (!this.fleetStore) throw new BackendError("invalid_input", "This computer supervises its own accounts.");
      return { ...this.fleet_, url: this.fleetStore };
    });
  }

  private sub<T>(set: Listener<T>, cb: (v: T) => void): Unsubscribe {
    set.add(cb);
    return () => set.delete(cb);
  }
  onFleet(cb: (d: FleetDelta) => void) {
    return this.sub(this.fleet, cb);
  }
  onLink(cb: (l: LinkInfo) => void) {
    return this.sub(this.link, cb);
  }
  onAlert(cb: (a: AlertInfo) => void) {
    return this.sub(this.alert, cb);
  }
  onExportProgress(cb: (p: ExportProgress) => void) {
    return this.sub(this.progress, cb);
  }
  onSettings(cb: (s: SettingsChanged) => void) {
    return this.sub(this.settings, cb);
  }
  onWebhookOff(cb: (w: WebhookOff) => void) {
    return this.sub(this.webhookOff, cb);
  }
}

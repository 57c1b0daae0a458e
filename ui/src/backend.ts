// The one door from the views to the shell. Views only ever talk to a `Backend`; the app runs
// with `TauriBackend` (tauri-backend.ts) and the tests with `FakeBackend` (fake-backend.ts).

import type {
  AlertInfo,
  Card,
  CommandError,
  Connection,
  DeliveryInfo,
  ErrorCode,
  ExportDone,
  ExportProgress,
  ExportRequest,
  ExportWhat,
  FleetConnectInput,
  FleetDelta,
  FleetStatus,
  HistoryInfo,
  LinkInfo,
  LinkRequest,
  NewAccountInput,
  NotificationText,
  PolicyValues,
  PresetInfo,
  Prefs,
  SettingsChanged,
  Snapshot,
  TrayLabels,
  NewWebhookInput,
  WebhookInfo,
  WebhookOff,
  WebhookSecret,
} from "./generated/api";

export type * from "./generated/api";

/** Preferences before the shell has answered (the shell's own defaults). */
export const DEFAULT_PREFS: Prefs = {
  language: "en",
  theme: "system",
  notifications: true,
  start_at_login: false,
  http_api: false,
  http_port: 7700,
  close_to_tray: true,
  start_hidden: false,
  tray_host: false,
};

export type Unsubscribe = () => void;
export type HistoryWindow = "24h" | "7d";

export interface Backend {
  snapshot(): Promise<Snapshot>;
  addAccount(input: NewAccountInput): Promise<Card>;
  removeAccount(id: number): Promise<void>;
  start(id: number): Promise<void>;
  stop(id: number): Promise<void>;
  retry(id: number): Promise<void>;
  resetBreaker(id: number): Promise<void>;
  setMuted(id: number, muted: boolean): Promise<void>;
  /** Whether a notification says when the account's creator goes live. */
  setNotifyLive(id: number, on: boolean): Promise<void>;
  relink(id: number, link: LinkRequest): Promise<void>;
  startAll(): Promise<void>;
  stopAll(): Promise<void>;
  checkAll(): Promise<void>;
  setAutorecover(on: boolean): Promise<boolean>;
  history(id: number, window: HistoryWindow): Promise<HistoryInfo>;
  getPolicy(): Promise<PolicyValues>;
  setPolicy(values: PolicyValues): Promise<PolicyValues>;
  /** The presets, each with only the values it sets. */
  policyPresets(): Promise<PresetInfo[]>;
  listSecrets(): Promise<string[]>;
  setSecret(name: string, value: string): Promise<void>;
  deleteSecret(name: string): Promise<void>;
  chooseExportPath(what: ExportWhat): Promise<string>;
  exportCsv(request: ExportRequest): Promise<ExportDone>;
  getPrefs(): Promise<Prefs>;
  setPrefs(prefs: Prefs): Promise<Prefs>;
  quit(): Promise<void>;
  /** A desktop notification in the UI's words (the shell honours the notifications switch). */
  notify(text: NotificationText): Promise<void>;
  /** The tray's words; the first call puts the tray up. */
  setTrayLabels(labels: TrayLabels): Promise<void>;
  listWebhooks(): Promise<WebhookInfo[]>;
  /** The answer carries the signing secret, to show once. */
  addWebhook(input: NewWebhookInput): Promise<WebhookSecret>;
  removeWebhook(id: number): Promise<void>;
  setWebhookEnabled(id: number, enabled: boolean): Promise<WebhookInfo>;
  testWebhook(id: number): Promise<DeliveryInfo>;
  rotateWebhookSecret(id: number): Promise<WebhookSecret>;
  webhookDeliveries(id: number, limit: number): Promise<DeliveryInfo[]>;
  replayDelivery(id: number): Promise<DeliveryInfo>;
  /** Which store the window works on: this computer's own, or a fleet's (a console). */
  connection(): Promise<Connection>;
  /** This computer becomes a fleet's console; the window then reloads. */
  connectFleet(input: FleetConnectInput): Promise<Connection>;
  /** Back to this computer's own accounts; the window then reloads. */
  disconnectFleet(): Promise<Connection>;
  /** The fleet's instances and totals (a console only). */
  fleetStatus(): Promise<FleetStatus>;

  onFleet(cb: (delta: FleetDelta) => void): Unsubscribe;
  onLink(cb: (link: LinkInfo) => void): Unsubscribe;
  onAlert(cb: (alert: AlertInfo) => void): Unsubscribe;
  onExportProgress(cb: (p: ExportProgress) => void): Unsubscribe;
  onSettings(cb: (s: SettingsChanged) => void): Unsubscribe;
  onWebhookOff(cb: (w: WebhookOff) => void): Unsubscribe;
}

/** A failed command, as the shell reports it: `{ code, message }`. */
export class BackendError extends Error implements CommandError {
  code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }

  static from(e: unknown): BackendError {
    if (e instanceof BackendError) return e;
    if (e && typeof e === "object" && "code" in e && "message" in e) {
      const c = e as CommandError;
      return new BackendError(c.code, c.message);
    }
    return new BackendError("internal", e instanceof Error ? e.message : String(e));
  }
}

// The recovery policy as an operator reads it: the values that matter day to day, grouped by what
// they protect, each with a label, a one-line explanation and the unit it is shown in. The raw
// `section.key` values (milliseconds, seconds) stay the truth: these only convert for display.

import type { PolicyValues } from "./generated/api";
import type { Key } from "./i18n";

/** The form's values: text as typed, switches as they are. */
export type PolicyFields = Record<string, Record<string, string | boolean>>;

/** How a value is shown: in seconds or minutes (converted from the stored unit) or as it is. */
export type Shown = "s" | "min" | "count" | "perSecond";

export interface PolicyField {
  /** `section.key`, as the engine names it. */
  key: string;
  shown: Shown;
  /** Stored units per shown unit (1000 for milliseconds shown as seconds). */
  factor: number;
  /** The stored value is a whole number. */
  whole: boolean;
}

export interface PolicyGroup {
  id: "reconnect" | "protect" | "dead" | "alerts";
  fields: PolicyField[];
}

const ms = (key: string, shown: "s" | "min"): PolicyField => ({ key, shown, factor: shown === "s" ? 1000 : 60_000, whole: true });
const secs = (key: string, shown: "s" | "min"): PolicyField => ({ key, shown, factor: shown === "s" ? 1 : 60, whole: true });
const count = (key: string): PolicyField => ({ key, shown: "count", factor: 1, whole: true });

export const POLICY_GROUPS: PolicyGroup[] = [
  {
    id: "reconnect",
    fields: [
      ms("backoff.base_ms", "s"),
      ms("backoff.cap_ms", "min"),
      ms("backoff.floor_rate_limited_ms", "min"),
      count("autorecover.concurrency"),
      ms("autorecover.start_delay_ms", "s"),
    ],
  },
  {
    id: "protect",
    fields: [
      { key: "pacing.rate_per_s", shown: "perSecond", factor: 1, whole: false },
      count("pacing.burst"),
      count("breaker.threshold"),
      secs("breaker.window_s", "min"),
      secs("breaker.cooldown_s", "min"),
      secs("breaker.max_cooldown_s", "min"),
    ],
  },
  {
    id: "dead",
    fields: [
      ms("connection.keepalive_ms", "s"),
      ms("connection.pong_timeout_ms", "s"),
      ms("connection.connect_timeout_ms", "s"),
      ms("connection.stable_after_ms", "s"),
    ],
  },
  {
    id: "alerts",
    fields: [
      secs("alerts.grace_s", "s"),
      count("alerts.summary_threshold"),
      count("alerts.flap_drops"),
      secs("alerts.flap_window_s", "min"),
    ],
  },
];

export const labelKey = (key: string) => `pol.${key}` as Key;
export const helpKey = (key: string) => `pol.${key}.help` as Key;

/** A stored value as shown: `90000` ms in minutes is `1.5`. Text that is no number stays as typed. */
export function toShown(raw: string, field: PolicyField): string {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n)) return raw;
  return String(Number((n / field.factor).toPrecision(12)));
}

/** A shown value back to the stored unit; text that is no number is kept, for the form to refuse. */
export function fromShown(text: string, field: PolicyField): string {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n)) return text;
  const raw = n * field.factor;
  return String(field.whole ? Math.round(raw) : Number(raw.toPrecision(12)));
}

/**
 * The field an engine message is about: the `section.key` it names first (a message may name two,
 * "backoff.cap_ms must be at least backoff.base_ms"; the first is the one to change).
 */
export function fieldOfMessage(message: string, keys: string[]): string | null {
  let best: { key: string; at: number } | null = null;
  for (const key of keys) {
    const at = message.search(new RegExp(`(^|[^\\w.])${key.replace(".", "\\.")}(?![\\w])`));
    if (at >= 0 && (best === null || at < best.at)) best = { key, at };
  }
  return best?.key ?? null;
}

/** Whether every value a preset sets is what the form holds now. */
export function matchesPreset(
  fields: PolicyFields,
  preset: PolicyValues,
): boolean {
  return Object.entries(preset).every(([section, keys]) =>
    Object.entries(keys).every(([key, v]) => {
      const have = fields[section]?.[key];
      return typeof v === "boolean" ? have === v : typeof have === "string" && have.trim() !== "" && Number(have) === v;
    }),
  );
}

/** The form with a preset's values put in; every other value stays as typed. */
export function withPreset(
  fields: PolicyFields,
  preset: PolicyValues,
): PolicyFields {
  const out = { ...fields };
  for (const [section, keys] of Object.entries(preset)) {
    out[section] = { ...out[section] };
    for (const [key, v] of Object.entries(keys)) out[section][key] = typeof v === "boolean" ? v : String(v);
  }
  return out;
}

/** Parses edited policy fields back to values; returns the first field that is not a number. */
export function parsePolicy(
  fields: PolicyFields,
): { values: PolicyValues } | { bad: string } {
  const values: PolicyValues = {};
  for (const [section, keys] of Object.entries(fields)) {
    values[section] = {};
    for (const [key, v] of Object.entries(keys)) {
      if (typeof v === "boolean") {
        values[section][key] = v;
        continue;
      }
      const n = Number(v);
      if (v.trim() === "" || !Number.isFinite(n)) return { bad: `${section}.${key}` };
      values[section][key] = n;
    }
  }
  return { values };
}

export function toFields(v: PolicyValues): PolicyFields {
  const f: PolicyFields = {};
  for (const [s, keys] of Object.entries(v)) {
    f[s] = {};
    for (const [k, x] of Object.entries(keys)) f[s][k] = typeof x === "boolean" ? x : String(x);
  }
  return f;
}


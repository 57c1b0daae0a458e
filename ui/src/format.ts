// Small formatting helpers shared by views (pure; tested).

import type { Language } from "./generated/api";

export function locale(lang: Language): string {
  return lang === "id" ? "id-ID" : "en-GB";
}

/** "3 min ago", "2 h ago", … relative to `now` (ms). */
export function ago(iso: string, now: number, lang: Language): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.max(0, Math.round((now - t) / 1000));
  const rtf = new Intl.RelativeTimeFormat(locale(lang), { numeric: "auto", style: "short" });
  if (s < 60) return rtf.format(-s, "second");
  if (s < 3600) return rtf.format(-Math.floor(s / 60), "minute");
  if (s < 86400) return rtf.format(-Math.floor(s / 3600), "hour");
  return rtf.format(-Math.floor(s / 86400), "day");
}

export function clock(iso: string, lang: Language): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  return t.toLocaleTimeString(locale(lang), { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function dateTime(iso: string, lang: Language): string {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  return t.toLocaleString(locale(lang), {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function pct(v: number | null): string {
  return v === null ? "—" : `${v.toFixed(1)}%`;
}

/** Intervals as fractions [start, end) of the window, clipped, for drawing. */
export function spans(
  intervals: { start: string; end: string | null }[],
  since: string,
  now: string,
): { x: number; w: number }[] {
  const a = Date.parse(since);
  const b = Date.parse(now);
  const span = b - a;
  if (!(span > 0)) return [];
  return intervals
    .map((i) => {
      const s = Math.max(a, Date.parse(i.start));
      const e = Math.min(b, i.end ? Date.parse(i.end) : b);
      return { x: (s - a) / span, w: Math.max(0, e - s) / span };
    })
    .filter((r) => r.w > 0);
}

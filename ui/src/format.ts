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

/** Two-digit country calling codes by first digit (1 and 7 are one digit; the rest three). */
const TWO_DIGIT_CODES = new Set([
  "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
  "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
  "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
]);

/**
 * A phone number as people write it: "+6281234567890" → "+62 812-3456-7890" (the country code
 * apart, then the rest in groups of 3-4-4, or 3-3-x for ten digits or fewer). Anything else is returned
 * as it came.
 */
export function phoneNumber(id: string): string {
  const digits = id.replace(/^\+/, "");
  if (!/^\d{8,15}$/.test(digits)) return id;
  const ccLen = digits[0] === "1" || digits[0] === "7" ? 1 : TWO_DIGIT_CODES.has(digits.slice(0, 2)) ? 2 : 3;
  const cc = digits.slice(0, ccLen);
  const rest = digits.slice(ccLen);
  const cut = rest.length <= 10 ? 6 : 7;
  const groups = [rest.slice(0, 3), rest.slice(3, cut), rest.slice(cut)];
  return `+${cc} ${groups.filter(Boolean).join("-")}`;
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

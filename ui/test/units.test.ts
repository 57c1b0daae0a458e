import { describe, expect, it } from "vitest";

import { columnsFor, visibleRows } from "../src/card";
import { secondsLeft } from "../src/dialogs";
import { Fleet, filterCards } from "../src/fleet";
import { makeCard } from "../src/fake-backend";
import { pct, phoneNumber, spans } from "../src/format";
import { POLICY_GROUPS, fieldOfMessage, fromShown, parsePolicy, toShown } from "../src/policy";
import type { AlertInfo, ReasonInfo } from "../src/generated/api";
import { alertText, reasonText, trayLabels, translator } from "../src/i18n";

describe("fleet store", () => {
  it("keeps restore order and identity of unchanged cards", () => {
    const f = new Fleet([makeCard(1, { priority: 100 }), makeCard(2, { priority: 900 }), makeCard(3)]);
    expect(f.cards().map((c) => c.id)).toEqual([2, 1, 3]);
    const before = f.cards();
    f.apply({ seq: 1, cards: [makeCard(3, { state: "backoff" })], removed: [1] });
    const after = f.cards();
    expect(after.map((c) => c.id)).toEqual([2, 3]);
    expect(after[0]).toBe(before[0]);
    expect(f.counts()).toMatchObject({ total: 2, connected: 1, backoff: 1 });
  });

  it("notifies once per delta and ignores empty ones", () => {
    const f = new Fleet([makeCard(1)]);
    let n = 0;
    f.subscribe(() => (n += 1));
    f.apply({ seq: 1, cards: [], removed: [] });
    f.apply({ seq: 2, cards: [makeCard(1, { state: "stopped" })], removed: [] });
    expect(n).toBe(1);
  });

  it("keeps the later read when the snapshot and deltas cross", () => {
    const f = new Fleet();
    // Both deltas come before the snapshot: one read before it (already in it), one after.
    f.apply({ seq: 4, cards: [makeCard(1, { state: "backoff" })], removed: [] });
    f.apply({ seq: 6, cards: [makeCard(2, { state: "connecting" })], removed: [3] });
    expect(f.cards()).toEqual([]);
    f.reset([makeCard(1, { state: "connected" }), makeCard(2, { state: "backoff" }), makeCard(3)], 5);
    expect(f.get(1)?.state).toBe("connected");
    expect(f.get(2)?.state).toBe("connecting");
    expect(f.get(3)).toBeUndefined();
    // After the snapshot: older deltas are dropped, newer ones applied.
    f.apply({ seq: 5, cards: [makeCard(1, { state: "stopped" })], removed: [] });
    expect(f.get(1)?.state).toBe("connected");
    f.apply({ seq: 7, cards: [makeCard(1, { state: "stopped" })], removed: [] });
    expect(f.get(1)?.state).toBe("stopped");
    // This window's own changes carry no seq and always apply.
    f.update([], [1]);
    expect(f.get(1)).toBeUndefined();
  });

  it("filters by name, target and state", () => {
    const cards = [makeCard(1, { name: "Toko Mawar" }), makeCard(2, { name: "Gudang", state: "stopped" })];
    expect(filterCards(cards, "mawar", null).map((c) => c.id)).toEqual([1]);
    expect(filterCards(cards, "/s/2", null).map((c) => c.id)).toEqual([2]);
    expect(filterCards(cards, "", "stopped").map((c) => c.id)).toEqual([2]);
  });
});

describe("virtual grid", () => {
  it("fits columns to the width and renders only rows near the viewport", () => {
    expect(columnsFor(200)).toBe(1);
    expect(columnsFor(1200)).toBe(3);
    expect(visibleRows(0, 800, 334)).toEqual([0, 6]);
    const [first, last] = visibleRows(100 * 208, 800, 334);
    expect(first).toBe(98);
    expect(last - first).toBeLessThan(10);
  });
});

describe("formatting", () => {
  it("clips intervals to the window", () => {
    const s = spans(
      [
        { start: "2026-11-22T00:00:00Z", end: "2026-11-23T06:00:00Z" },
        { start: "2026-11-23T18:00:00Z", end: null },
      ],
      "2026-11-23T00:00:00Z",
      "2026-11-24T00:00:00Z",
    );
    expect(s).toEqual([
      { x: 0, w: 0.25 },
      { x: 0.75, w: 0.25 },
    ]);
    expect(pct(null)).toBe("—");
    expect(secondsLeft(new Date(10_500).toISOString(), 0)).toBe(11);
    expect(secondsLeft(new Date(0).toISOString(), 5000)).toBe(0);
  });

  it("parses policy fields and names the first bad one", () => {
    expect(parsePolicy({ pacing: { rate_per_s: "2.5", enabled: true } })).toEqual({
      values: { pacing: { rate_per_s: 2.5, enabled: true } },
    });
    expect(parsePolicy({ alerts: { grace_s: "" } })).toEqual({ bad: "alerts.grace_s" });
  });

  it("converts between the engine's units and the shown ones, keeping what is no number", () => {
    const field = (key: string) => POLICY_GROUPS.flatMap((g) => g.fields).find((f) => f.key === key)!;
    const cap = field("backoff.cap_ms");
    expect(toShown("90000", cap)).toBe("1.5");
    expect(fromShown("1.5", cap)).toBe("90000");
    expect(fromShown("0.00001", cap)).toBe("1");
    expect(fromShown("soon", cap)).toBe("soon");
    expect(toShown("soon", cap)).toBe("soon");
    const rate = field("pacing.rate_per_s");
    expect(fromShown("0.3", rate)).toBe("0.3");
    expect(toShown(fromShown("0.1", field("breaker.cooldown_s")), field("breaker.cooldown_s"))).toBe("0.1");
    // Every shown value is one the engine has, named once.
    const keys = POLICY_GROUPS.flatMap((g) => g.fields.map((f) => f.key));
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("finds the field an engine message is about: the first key it names, whole", () => {
    const keys = ["backoff.base_ms", "backoff.cap_ms", "breaker.cooldown_s", "breaker.max_cooldown_s"];
    expect(fieldOfMessage("Invalid policy value: backoff.cap_ms must be at least backoff.base_ms", keys)).toBe("backoff.cap_ms");
    expect(fieldOfMessage("breaker.max_cooldown_s must be at most 604800 (a week)", keys)).toBe("breaker.max_cooldown_s");
    expect(fieldOfMessage("Invalid policy value: something else", keys)).toBeNull();
  });
});

describe("words", () => {
  const reason = (code: string, extra: Partial<ReasonInfo> = {}): ReasonInfo => ({
    code,
    status: null,
    close_code: null,
    until: null,
    ...extra,
  });
  const codes = [
    "timeout", "refused", "closed-by-peer", "stalled", "network", "stale", "logged-out", "replaced",
    "banned", "outdated", "credentials-missing", "rate-limited", "breaker-open", "qr-expired",
    "pairing-failed", "operator", "autorecover-off", "shutdown", "removed", "crashed",
    "unsupported", "restart-required", "not-linked",
  ];

  it("puts every reason code into both languages, with its parameter", () => {
    for (const code of codes) {
      const en = reasonText(reason(code), "en");
      const id = reasonText(reason(code), "id");
      expect(en, code).not.toBe(code);
      expect(id, code).not.toBe(en);
    }
    expect(reasonText(reason("refused", { status: 503 }), "en")).toBe("refused by the server (HTTP 503)");
    expect(reasonText(reason("refused", { status: 503 }), "id")).toBe("ditolak oleh server (HTTP 503)");
    expect(reasonText(reason("closed-by-peer", { close_code: 4000 }), "id")).toContain("4000");
    expect(reasonText(reason("banned", { until: "2026-11-01T08:30:00.000Z" }), "id")).toBe(
      "diblokir sementara sampai 2026-11-01 08:30 UTC",
    );
    // A code this version does not know still shows something: the code itself.
    expect(reasonText(reason("from-the-future"), "id")).toBe("from-the-future");
  });

  it("words alerts and the tray in the chosen language", () => {
    const down: AlertInfo = {
      kind: "down",
      account: 1,
      name: "Shop A",
      reason: reason("network"),
      since: "2026-11-01T08:30:00.000Z",
      drops: 0,
      window_s: 0,
      down: 0,
      needs_operator: 0,
      unstable: 0,
      examples: [],
    };
    expect(alertText(down, translator("en"), "en")).toEqual({
      title: "Shop A is down",
      body: "Not recovered since 08:30 UTC (network error). Lifeline keeps retrying.",
    });
    expect(alertText(down, translator("id"), "id").body).toContain("kesalahan jaringan");
    const summary: AlertInfo = {
      ...down,
      kind: "summary",
      name: null,
      reason: null,
      since: null,
      down: 7,
      needs_operator: 1,
      unstable: 2,
      examples: ["a", "b"],
    };
    expect(alertText(summary, translator("en"), "en").title).toBe("10 accounts need attention");
    expect(alertText(summary, translator("en"), "en").body).toBe("7 down, 1 need the operator, 2 unstable: a, b…");
    expect(alertText(summary, translator("id"), "id").body).toContain("a, b");
    const flapping: AlertInfo = { ...down, kind: "unstable", reason: null, since: null, drops: 5, window_s: 600 };
    expect(alertText(flapping, translator("en"), "en")).toEqual({
      title: "Shop A is unstable",
      body: "Dropped 5 times in 10 min, though it reconnects each time. Lifeline backs off; check the number's phone and network.",
    });
    expect(alertText(flapping, translator("id"), "id").title).toBe("Shop A tidak stabil");
    const live: AlertInfo = { ...down, kind: "went_live", name: "Mawar live", reason: null, since: null };
    expect(alertText(live, translator("en"), "en").title).toBe("Mawar live went live");
    expect(alertText(live, translator("id"), "id").title).toBe("Mawar live mulai siaran langsung");
    const tray = trayLabels(translator("id"));
    expect(tray.quit).toBe("Keluar dari Lifeline");
    for (const slot of ["{connected}", "{recovering}", "{needs}", "{total}"]) {
      expect(tray.summary).toContain(slot);
      expect(trayLabels(translator("en")).summary).toContain(slot);
    }
  });
});

describe("phone numbers as people write them", () => {
  it("puts the country code apart and groups the rest", () => {
    expect(phoneNumber("+6281234567890")).toBe("+62 812-3456-7890");
    expect(phoneNumber("+14155552671")).toBe("+1 415-555-2671");
    expect(phoneNumber("+447911123456")).toBe("+44 791-112-3456");
    expect(phoneNumber("+234803123456")).toBe("+234 803-123-456");
  });
  it("leaves anything that is not a phone number as it came", () => {
    expect(phoneNumber("abc")).toBe("abc");
    expect(phoneNumber("+123")).toBe("+123");
  });
});

describe("search finds a WhatsApp number however it is typed", () => {
  const linked = makeCard(1, { name: "Toko", kind: "whatsapp", remote_id: "+6281234567890", remote_name: "Mawar Florist" });
  const other = makeCard(2, { name: "Gudang", kind: "whatsapp" });
  it.each(["+62 812-3456", "0812 3456", "6281234", "mawar florist"])("%s", (q) => {
    expect(filterCards([linked, other], q, null).map((c) => c.id)).toEqual([1]);
  });
  it("a name with digits is not read as a number", () => {
    expect(filterCards([linked, other], "toko 2", null)).toEqual([]);
  });
});

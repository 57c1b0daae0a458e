import { act, cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { afterEach, describe, expect, it } from "vitest";

import { App } from "../src/app";
import { BackendError } from "../src/backend";
import { FakeBackend, makeCard } from "../src/fake-backend";

afterEach(cleanup);

async function mount(backend: FakeBackend) {
  render(<App backend={backend} />);
  await screen.findByRole("switch");
  await waitFor(() => expect(backend.calls.some(([c]) => c === "getPrefs")).toBe(true));
}

const card = (name: string) =>
  screen.getByRole("heading", { name }).closest("article") as HTMLElement;

describe("fleet view", () => {
  it("shows each card with state, reason, uptime, score and breaker", async () => {
    const b = new FakeBackend([
      makeCard(1, { name: "Shop A", uptime_pct: 97.25, score: 88, reconnects: 3 }),
      makeCard(2, {
        name: "Shop B",
        state: "backoff",
        reason: { code: "closed-by-peer", status: null, close_code: 1011, until: null },
        retry_at: "2026-11-23T10:00:05.000Z",
        breaker: "open",
      }),
    ]);
    await mount(b);
    const a = within(card("Shop A"));
    expect(a.getByText("Connected")).toBeTruthy();
    expect(a.getByText("97.3%")).toBeTruthy();
    expect(a.getByText("88")).toBeTruthy();
    expect(a.getByText("3")).toBeTruthy();
    const bcard = card("Shop B");
    expect(bcard.dataset.state).toBe("backoff");
    expect(within(bcard).getByText("Recovering")).toBeTruthy();
    expect(within(bcard).getByTestId("reason").textContent).toContain("closed by the server (code 1011)");
    expect(within(bcard).getByText("open")).toBeTruthy();
    // An open breaker offers a reset; a closed one does not.
    expect(within(bcard).getByRole("button", { name: "Reset breaker Shop B" })).toBeTruthy();
    expect(a.queryByRole("button", { name: /Reset breaker/ })).toBeNull();
  });

  it("marks an account that keeps dropping as unstable until the mark lapses", async () => {
    const b = new FakeBackend([
      makeCard(1, { name: "Flapping", unstable_until: "2999-01-01T00:00:00.000Z" }),
      makeCard(2, { name: "Held since", unstable_until: "2000-01-01T00:00:00.000Z" }),
      makeCard(3, { name: "Steady" }),
    ]);
    await mount(b);
    const mark = within(card("Flapping")).getByTestId("unstable");
    expect(mark.textContent).toContain("Unstable");
    expect(mark.getAttribute("title")).toContain("Keeps connecting and dropping");
    expect(within(card("Held since")).queryByTestId("unstable")).toBeNull();
    expect(within(card("Steady")).queryByTestId("unstable")).toBeNull();
  });

  it("counts accounts by state and filters by a count", async () => {
    const b = new FakeBackend([
      makeCard(1, { name: "A" }),
      makeCard(2, { name: "B" }),
      makeCard(3, { name: "C", state: "stopped", desired: false }),
    ]);
    await mount(b);
    expect(screen.getByTestId("count-connected").textContent).toContain("2");
    expect(screen.getByTestId("count-stopped").textContent).toContain("1");
    fireEvent.click(screen.getByTestId("count-stopped"));
    expect(screen.getAllByTestId("card").map((c) => c.dataset.id)).toEqual(["3"]);
    fireEvent.click(screen.getByTestId("count-all"));
    expect(screen.getAllByTestId("card")).toHaveLength(3);
  });

  it("applies live fleet events to the cards and the counts", async () => {
    const b = new FakeBackend([makeCard(1, { name: "Shop A" })]);
    await mount(b);
    act(() =>
      b.setState(1, "backoff", { code: "network", status: null, close_code: null, until: null }),
    );
    expect(card("Shop A").dataset.state).toBe("backoff");
    expect(within(card("Shop A")).getByTestId("reason").textContent).toContain("network error");
    expect(screen.getByTestId("count-backoff").textContent).toContain("1");
    act(() => b.setState(1, "connected"));
    expect(card("Shop A").dataset.state).toBe("connected");
    act(() => b.emitFleet({ cards: [], removed: [1] }));
    expect(screen.queryByRole("heading", { name: "Shop A" })).toBeNull();
  });

  it("card actions call the backend for that account", async () => {
    const b = new FakeBackend([makeCard(7, { name: "Shop A" })]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Stop Shop A" }));
    await waitFor(() => expect(card("Shop A").dataset.state).toBe("stopped"));
    fireEvent.click(screen.getByRole("button", { name: "Start Shop A" }));
    fireEvent.click(screen.getByRole("button", { name: "Retry now Shop A" }));
    fireEvent.click(screen.getByRole("button", { name: "Mute Shop A" }));
    await waitFor(() => expect(screen.getByRole("button", { name: "Unmute Shop A" })).toBeTruthy());
    expect(b.calls.map(([c, id]) => `${c}:${id}`)).toEqual(
      expect.arrayContaining(["stop:7", "start:7", "retry:7", "setMuted:7"]),
    );
  });

  it("an account held stopped by autorecover off offers Start", async () => {
    const b = new FakeBackend([
      makeCard(1, {
        name: "Held",
        state: "stopped",
        desired: true,
        reason: { code: "autorecover-off", status: null, close_code: null, until: null },
      }),
    ]);
    await mount(b);
    expect(within(card("Held")).getByTestId("reason").textContent).toContain("autorecover is off");
    fireEvent.click(screen.getByRole("button", { name: "Start Held" }));
    await waitFor(() => expect(card("Held").dataset.state).toBe("connected"));
  });

  it("remove asks for confirmation first", async () => {
    const b = new FakeBackend([makeCard(1, { name: "Shop A" })]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Remove Shop A" }));
    const dialog = screen.getByRole("dialog");
    expect(dialog.textContent).toContain("Remove 'Shop A'?");
    fireEvent.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(b.calls.some(([c]) => c === "removeAccount")).toBe(false);
    fireEvent.click(screen.getByRole("button", { name: "Remove Shop A" }));
    fireEvent.click(within(screen.getByRole("dialog")).getByRole("button", { name: "Remove" }));
    await waitFor(() => expect(screen.queryByRole("heading", { name: "Shop A" })).toBeNull());
    expect(b.calls).toContainEqual(["removeAccount", 1]);
  });

  it("the autorecover switch saves and follows changes made elsewhere", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await mount(b);
    const sw = screen.getByRole("switch") as HTMLInputElement;
    expect(sw.checked).toBe(true);
    fireEvent.click(sw);
    await waitFor(() => expect(b.autorecover).toBe(false));
    expect((screen.getByRole("switch") as HTMLInputElement).checked).toBe(false);
    act(() => b.emitSettings({ autorecover: true }));
    expect((screen.getByRole("switch") as HTMLInputElement).checked).toBe(true);
  });

  it("fleet buttons reach the backend and errors are shown as the engine words them", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Check all" }));
    b.failNext = new BackendError("storage", "Database error: disk I/O error");
    fireEvent.click(screen.getByRole("button", { name: "Stop all" }));
    expect((await screen.findByRole("alert")).textContent).toContain("Database error: disk I/O error");
    expect(b.calls.map(([c]) => c)).toEqual(expect.arrayContaining(["checkAll", "stopAll"]));
  });

  it("renders 1000 accounts with only a window of cards in the DOM", async () => {
    const b = new FakeBackend(Array.from({ length: 1000 }, (_, i) => makeCard(i + 1)));
    const t0 = performance.now();
    await mount(b);
    const rendered = screen.getAllByTestId("card").length;
    expect(rendered).toBeGreaterThan(0);
    expect(rendered).toBeLessThan(60);
    expect(screen.getByTestId("count-all").textContent).toContain("1000");
    // A mass drop arrives as one delta and is applied in one render.
    act(() =>
      b.emitFleet({
        cards: [...b.cards.values()].map((c) => ({ ...c, state: "backoff" as const })),
        removed: [],
      }),
    );
    expect(screen.getByTestId("count-backoff").textContent).toContain("1000");
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it("words an alert in the chosen language, shows it and asks for the desktop notification", async () => {
    const b = new FakeBackend([makeCard(1, { name: "Toko" })]);
    b.prefs = { ...b.prefs, language: "id" };
    await mount(b);
    // The tray gets its words in the operator's language once the preferences are read.
    const lastLabels = () => b.calls.filter(([c]) => c === "setTrayLabels").at(-1)?.[1] as { quit: string };
    await waitFor(() => expect(lastLabels()?.quit).toBe("Keluar dari Lifeline"));
    act(() =>
      b.emitAlert({
        kind: "needs_operator",
        account: 1,
        name: "Toko",
        reason: { code: "logged-out", status: null, close_code: null, until: null },
        since: null,
        drops: 0,
        window_s: 0,
        down: 0,
        needs_operator: 0,
        unstable: 0,
        examples: [],
      }),
    );
    const banner = await screen.findByRole("alert");
    expect(banner.textContent).toContain("Toko perlu tindakan Anda");
    expect(banner.textContent).toContain("keluar di ponsel");
    const [, text] = b.calls.find(([c]) => c === "notify") ?? [];
    expect(text).toEqual({
      title: "Toko perlu tindakan Anda",
      body: "keluar di ponsel — pindai kode QR baru untuk menautkan lagi",
    });
  });

  it("shows why the shell cannot supervise", async () => {
    const b = new FakeBackend();
    b.failNext = new BackendError("already_running", "Another Lifeline (pid 42) is already supervising /d.");
    render(<App backend={b} />);
    expect((await screen.findByRole("alert")).textContent).toContain("pid 42");
  });
});

describe("add account and linking", () => {
  it("adds a WebSocket account with a header from a named secret", async () => {
    const b = new FakeBackend();
    b.secrets = ["feed-token"];
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Add account" }));
    const dialog = await screen.findByRole("dialog", { name: "Add account" });
    fireEvent.input(within(dialog).getByLabelText("Name"), { target: { value: "Feed" } });
    fireEvent.input(within(dialog).getByLabelText("WebSocket URL"), {
      target: { value: "ws://127.0.0.1:9000/s/feed" },
    });
    await waitFor(() => expect(within(dialog).getByRole("option", { name: "feed-token" })).toBeTruthy());
    fireEvent.change(within(dialog).getByLabelText("Header value from secret"), {
      target: { value: "feed-token" },
    });
    fireEvent.submit(within(dialog).getByRole("button", { name: "Add" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    const call = b.calls.find(([c]) => c === "addAccount");
    expect(call?.[1]).toMatchObject({
      kind: "websocket",
      name: "Feed",
      url: "ws://127.0.0.1:9000/s/feed",
      header_name: "Authorization",
      header_secret: "feed-token",
      link: null,
    });
    expect(screen.getByRole("heading", { name: "Feed" })).toBeTruthy();
  });

  it("adds a TikTok creator by user name, and its card says when it waits for a live", async () => {
    const b = new FakeBackend([
      makeCard(1, { name: "Mawar live", kind: "tiktok", target: "@mawar", state: "waiting" }),
      makeCard(2, { name: "Melati live", kind: "tiktok", target: "@melati", state: "connected" }),
      makeCard(3, {
        name: "Anggrek live",
        kind: "tiktok",
        target: "@anggrek",
        state: "waiting",
        reason: { code: "rate-limited", status: null, close_code: null, until: null },
      }),
    ]);
    await mount(b);
    expect(within(card("Mawar live")).getByText("Waiting for a live")).toBeTruthy();
    expect(within(card("Mawar live")).getByText("@mawar")).toBeTruthy();
    expect(within(card("Melati live")).getByText("In a live")).toBeTruthy();
    expect(within(card("Anggrek live")).getByTestId("reason").textContent).toContain("rate limited");
    // Waiting is up, not a problem: it counts among the healthy states.
    expect(screen.getByTestId("count-waiting").textContent).toContain("2");
    // A TikTok card offers live notifications; turning them on reaches the backend.
    fireEvent.click(within(card("Mawar live")).getByRole("button", { name: /Notify when live/ }));
    await waitFor(() => expect(b.calls).toContainEqual(["setNotifyLive", 1, true]));
    await waitFor(() =>
      expect(within(card("Mawar live")).getByRole("button", { name: /Stop live notifications/ })).toBeTruthy(),
    );
    fireEvent.click(screen.getByRole("button", { name: "Add account" }));
    const dialog = await screen.findByRole("dialog", { name: "Add account" });
    fireEvent.click(within(dialog).getByLabelText("TikTok LIVE"));
    fireEvent.input(within(dialog).getByLabelText("Name"), { target: { value: "Toko live" } });
    fireEvent.input(within(dialog).getByLabelText("TikTok creator (@name)"), {
      target: { value: "@tokomawar" },
    });
    fireEvent.submit(within(dialog).getByRole("button", { name: "Add" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    const call = b.calls.find(([c]) => c === "addAccount");
    expect(call?.[1]).toMatchObject({ kind: "tiktok", name: "Toko live", url: "@tokomawar", link: null });
  });

  it("keeps the dialog open with the engine's message on invalid input", async () => {
    const b = new FakeBackend();
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Add account" }));
    const dialog = await screen.findByRole("dialog", { name: "Add account" });
    fireEvent.submit(within(dialog).getByRole("button", { name: "Add" }));
    expect((await within(dialog).findByRole("alert")).textContent).toContain("Account name is empty");
  });

  it("a WhatsApp account opens the QR modal, which shows live codes with a countdown", async () => {
    const b = new FakeBackend();
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Add account" }));
    const dialog = await screen.findByRole("dialog", { name: "Add account" });
    fireEvent.click(within(dialog).getByLabelText("WhatsApp"));
    fireEvent.input(within(dialog).getByLabelText("Name"), { target: { value: "Toko Mawar" } });
    fireEvent.submit(within(dialog).getByRole("button", { name: "Add" }));
    const modal = await screen.findByTestId("link-modal");
    expect(modal.textContent).toContain("Waiting for a code");
    const id = [...b.cards.values()][0].id;
    act(() =>
      b.emitLink({
        account: id,
        mode: "qr",
        qr_svg: '<svg xmlns="http://www.w3.org/2000/svg" data-testid="qr-svg"></svg>',
        code: null,
        phone: null,
        expires_at: new Date(Date.now() + 20_000).toISOString(),
      }),
    );
    expect(within(modal).getByTestId("qr-svg")).toBeTruthy();
    expect(within(modal).getByTestId("countdown").textContent).toMatch(/Expires in (19|20) s/);
    // Codes for other accounts are ignored.
    act(() =>
      b.emitLink({ account: id + 1, mode: "phone_code", qr_svg: null, code: "ZZZZ9999", phone: "+1", expires_at: "" }),
    );
    expect(modal.textContent).not.toContain("ZZZZ");
    fireEvent.click(within(modal).getByRole("button", { name: "New code" }));
    expect(b.calls).toContainEqual(["relink", id, { mode: "qr" }]);
    act(() => b.setState(id, "connected"));
    expect(modal.textContent).toContain("Linked. Toko Mawar is connected.");
  });

  it("pair-by-phone shows the 8-character code", async () => {
    const b = new FakeBackend([makeCard(4, { name: "Toko", kind: "whatsapp", state: "linking" })]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Relink Toko" }));
    const modal = await screen.findByTestId("link-modal");
    act(() =>
      b.emitLink({
        account: 4,
        mode: "phone_code",
        qr_svg: null,
        code: "ABCD1234",
        phone: "+6281234567890",
        expires_at: new Date(Date.now() + 60_000).toISOString(),
      }),
    );
    expect(modal.textContent).toContain("ABCD-1234");
  });
});

describe("detail, export and settings", () => {
  it("detail shows the timeline share and the event log with reasons and causes", async () => {
    const b = new FakeBackend([makeCard(1, { name: "Shop A" })]);
    b.history_ = {
      since: "2026-11-22T10:00:00.000Z",
      now: "2026-11-23T10:00:00.000Z",
      intervals: [{ start: "2026-11-22T10:00:00.000Z", end: "2026-11-22T22:00:00.000Z" }],
      events: [
        {
          id: 9,
          at: "2026-11-22T22:00:00.000Z",
          from: "connected",
          to: "backoff",
          reason: { code: "stalled", status: null, close_code: null, until: null },
          detail: "no pong in 10 s",
          by: "engine",
        },
      ],
      lives: [],
    };
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Details Shop A" }));
    const detail = await screen.findByTestId("detail");
    await waitFor(() => expect(within(detail).getByTestId("events")).toBeTruthy());
    expect(within(detail).getByRole("img").getAttribute("aria-label")).toBe("Connected 50% of the window");
    const row = within(detail).getAllByRole("row")[1];
    expect(row.textContent).toContain("Connected → Recovering");
    expect(row.textContent).toContain("server stopped answering keepalives");
    expect(row.textContent).toContain("no pong in 10 s");
    expect(row.textContent).toContain("engine");
    fireEvent.click(within(detail).getByRole("radio", { name: "7 days" }));
    await waitFor(() => expect(b.calls).toContainEqual(["history", 1, "7d"]));
  });

  it("detail lists a TikTok creator's lives with their counts", async () => {
    const b = new FakeBackend([makeCard(1, { name: "Mawar live", kind: "tiktok", state: "waiting" })]);
    const counts = (likes: number) => [
      { name: "peak_viewers", value: 480 },
      { name: "avg_viewers", value: 311 },
      { name: "likes", value: likes },
      { name: "comments", value: 12 },
      { name: "gifts", value: 35 },
      { name: "follows", value: 2 },
      { name: "viewer_samples", value: 9 },
    ];
    b.history_ = {
      since: "2026-11-22T10:00:00.000Z",
      now: "2026-11-23T10:00:00.000Z",
      intervals: [],
      events: [],
      lives: [
        { key: "73002", started_at: "2026-11-23T08:00:00.000Z", ended_at: null, end: null, counts: counts(4021) },
        {
          key: "73001",
          started_at: "2026-11-22T12:00:00.000Z",
          ended_at: "2026-11-22T13:00:00.000Z",
          end: "ended-while-away",
          counts: counts(98),
        },
      ],
    };
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Details Mawar live" }));
    const table = await within(await screen.findByTestId("detail")).findByTestId("lives");
    const headers = within(table).getAllByRole("columnheader").map((h) => h.textContent);
    expect(headers).toEqual(["Started", "Ended", "Peak viewers", "Average viewers", "Likes", "Comments", "Gifts", "Follows"]);
    const rows = within(table).getAllByRole("row");
    expect(rows[1].textContent).toContain("live now");
    expect(rows[1].textContent).toContain("4021");
    expect(rows[2].textContent).toContain("ended while not watched");
  });

  it("export asks for a path, then exports with filters and reports rows", async () => {
    const b = new FakeBackend([makeCard(1, { name: "Shop A" })]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Export CSV" }));
    const dialog = await screen.findByRole("dialog", { name: "Export CSV" });
    fireEvent.click(within(dialog).getByLabelText("Events"));
    fireEvent.change(within(dialog).getByLabelText("Account"), { target: { value: "1" } });
    fireEvent.input(within(dialog).getByLabelText("Since"), { target: { value: "2026-11-01" } });
    fireEvent.submit(within(dialog).getByRole("button", { name: "Choose file and export" }));
    await waitFor(() => expect(dialog.textContent).toContain("Exported 12345 rows to /tmp/export.csv"));
    expect(b.calls).toContainEqual([
      "exportCsv",
      { path: "/tmp/export.csv", what: "events", account: 1, since: "2026-11-01", until: null },
    ]);
  });

  it("a cancelled save dialog exports nothing and shows no error", async () => {
    const b = new FakeBackend([makeCard(1)]);
    b.exportPath = null;
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Export CSV" }));
    const dialog = await screen.findByRole("dialog", { name: "Export CSV" });
    fireEvent.submit(within(dialog).getByRole("button", { name: "Choose file and export" }));
    await waitFor(() => expect(b.calls.some(([c]) => c === "chooseExportPath")).toBe(true));
    expect(b.calls.some(([c]) => c === "exportCsv")).toBe(false);
    expect(within(dialog).queryByRole("alert")).toBeNull();
  });

  it("policy values are shown in operator units, refused next to their field, saved in the engine's units", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    const form = await screen.findByTestId("policy-form");
    // 300000 ms is shown as 5 minutes, with its unit and a one-line explanation.
    const cap = within(form).getByLabelText("Retries spread over at most") as HTMLInputElement;
    expect(cap.value).toBe("5");
    expect(cap.getAttribute("aria-describedby")).toContain("help");
    expect(within(within(form).getByTestId("policy-group-reconnect")).getAllByText("minutes").length).toBeGreaterThan(0);
    const rate = within(form).getByLabelText("New connections, whole fleet");
    fireEvent.input(rate, { target: { value: "fast" } });
    fireEvent.submit(form);
    const notNumber = await within(form).findByText("New connections, whole fleet must be a number.");
    expect(notNumber.closest(".policy-field")?.querySelector("input")).toBe(rate);
    expect(rate.getAttribute("aria-invalid")).toBe("true");
    expect(b.calls.some(([c]) => c === "setPolicy")).toBe(false);
    // The engine's refusal, in its words, beside the field its message names first.
    fireEvent.input(rate, { target: { value: "2" } });
    fireEvent.input(cap, { target: { value: "0.01" } });
    fireEvent.focusOut(cap);
    fireEvent.submit(form);
    const refused = await within(form).findByText(/backoff\.cap_ms must be at least backoff\.base_ms/);
    expect(refused.closest(".policy-field")?.querySelector("input")).toBe(cap);
    // Typed in minutes, stored in milliseconds.
    fireEvent.input(cap, { target: { value: "1.5" } });
    fireEvent.submit(form);
    await waitFor(() => expect(b.policy.backoff.cap_ms).toBe(90000));
    expect(within(form).queryByText(/must be at least/)).toBeNull();
    expect((await screen.findByTestId("policy-msg")).textContent).toContain("Saved.");
  });

  it("a refused value that only Advanced shows opens Advanced and is marked there", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    const form = await screen.findByTestId("policy-form");
    const raw = within(form).getByTestId("policy-raw");
    const floor = within(raw).getByLabelText("floor_closed_ms");
    fireEvent.input(floor, { target: { value: "" } });
    fireEvent.submit(form);
    const msg = await within(raw).findByText("backoff.floor_closed_ms must be a number.");
    expect(msg.closest(".policy-field")?.querySelector("input")).toBe(floor);
    expect((form.querySelector("details") as HTMLDetailsElement).open).toBe(true);
  });

  it("a preset fills its values, shows as chosen, and is in force only once saved", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    const form = await screen.findByTestId("policy-form");
    const careful = await within(form).findByRole("button", { name: /Careful — safest for numbers/ });
    const balanced = within(form).getByRole("button", { name: /Balanced/ });
    expect(balanced.getAttribute("aria-pressed")).toBe("true");
    expect(careful.getAttribute("aria-pressed")).toBe("false");
    const keepalive = within(form).getByLabelText("Check a live connection every") as HTMLInputElement;
    fireEvent.input(keepalive, { target: { value: "20" } });
    fireEvent.click(careful);
    expect(careful.getAttribute("aria-pressed")).toBe("true");
    expect(balanced.getAttribute("aria-pressed")).toBe("false");
    expect((within(form).getByLabelText("First retry within") as HTMLInputElement).value).toBe("5");
    expect(keepalive.value).toBe("20");
    expect(b.policy.pacing.rate_per_s).toBe(2);
    fireEvent.submit(form);
    await waitFor(() => expect(b.policy.pacing.rate_per_s).toBe(0.5));
    expect(b.policy.breaker.threshold).toBe(5);
    expect(b.policy.connection.keepalive_ms).toBe(20000);
    // A value changed by hand: no preset is chosen any more.
    fireEvent.input(within(form).getByLabelText("Attempts allowed at once"), { target: { value: "3" } });
    expect(careful.getAttribute("aria-pressed")).toBe("false");
  });

  it("a saved secret shows only its name and the value field is cleared", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    const form = await screen.findByTestId("secret-form");
    fireEvent.input(within(form).getByLabelText("Secret name"), { target: { value: "feed-token" } });
    const value = within(form).getByLabelText("Value") as HTMLInputElement;
    expect(value.type).toBe("password");
    fireEvent.input(value, { target: { value: "s3cr3t-value" } });
    fireEvent.submit(form);
    await waitFor(() => expect(screen.getByTestId("secret-list").textContent).toContain("feed-token"));
    expect(value.value).toBe("");
    expect(document.body.textContent).not.toContain("s3cr3t-value");
    expect(JSON.stringify(b.calls)).not.toContain("s3cr3t-value");
  });

  it("switching to Bahasa Indonesia translates the interface and the reasons", async () => {
    const b = new FakeBackend([
      makeCard(1, { name: "Toko", state: "backoff", reason: { code: "network", status: null, close_code: null, until: null } }),
    ]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    fireEvent.change(await screen.findByLabelText("Language"), { target: { value: "id" } });
    await waitFor(() => expect(b.prefs.language).toBe("id"));
    fireEvent.click(screen.getByRole("button", { name: /Kembali ke akun/ }));
    expect(screen.getByRole("button", { name: "Tambah akun" })).toBeTruthy();
    expect(within(card("Toko")).getByText("Memulihkan")).toBeTruthy();
    expect(within(card("Toko")).getByTestId("reason").textContent).toContain("kesalahan jaringan");
    expect(document.documentElement.lang).toBe("id");
  });

  it("closing the window: keep running in the tray or quit, and where no tray is shown it says so", async () => {
    const b = new FakeBackend([makeCard(1)]);
    b.prefs = { ...b.prefs, tray_host: true };
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    const keep = (await screen.findByLabelText(/Keep running in the tray/)) as HTMLInputElement;
    expect(keep.checked).toBe(true);
    expect(screen.queryByTestId("no-tray")).toBeNull();
    const hidden = screen.getByLabelText(/in the tray, without opening the window/) as HTMLInputElement;
    expect(hidden.disabled).toBe(true);
    fireEvent.click(screen.getByLabelText("Start Lifeline at login"));
    await waitFor(() => expect(hidden.disabled).toBe(false));
    fireEvent.click(hidden);
    await waitFor(() => expect(b.prefs.start_hidden).toBe(true));
    fireEvent.click(screen.getByLabelText(/Quit Lifeline/));
    await waitFor(() => expect(b.prefs.close_to_tray).toBe(false));
    cleanup();

    const bare = new FakeBackend([makeCard(1)]);
    bare.prefs = { ...bare.prefs, tray_host: false };
    await mount(bare);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    expect((await screen.findByTestId("no-tray")).textContent).toContain("closing the window quits Lifeline");
  });

  it("an empty fleet welcomes the operator and offers a first WhatsApp number", async () => {
    const b = new FakeBackend([]);
    await mount(b);
    const welcome = await screen.findByTestId("welcome");
    expect(welcome.textContent).toContain("keeps it connected");
    fireEvent.click(within(welcome).getByRole("button", { name: "Add your first WhatsApp number" }));
    const dialog = await screen.findByTestId("add-account");
    expect((within(dialog).getByLabelText("WhatsApp") as HTMLInputElement).checked).toBe(true);
  });

  it("'Needs you' comes first, filters, and each such card names the one fix", async () => {
    const reason = (code: string, until: string | null = null) => ({ code, status: null, close_code: null, until });
    const b = new FakeBackend([
      makeCard(1, { name: "Toko", kind: "whatsapp", state: "needs_operator", reason: reason("logged-out") }),
      makeCard(2, { name: "Gudang", kind: "whatsapp", state: "needs_operator", reason: reason("banned", "2026-12-24T10:00:00Z") }),
      makeCard(3, { name: "Feed", state: "connected" }),
    ]);
    await mount(b);
    const filters = screen.getByRole("navigation").querySelectorAll("button");
    expect(filters[0].textContent).toBe("Needs you 2");
    fireEvent.click(filters[0]);
    await waitFor(() => expect(screen.queryByRole("heading", { name: "Feed" })).toBeNull());
    expect(within(card("Toko")).getByTestId("fix").textContent).toContain("Relink and scan the new QR code");
    expect(within(card("Toko")).getByRole("button", { name: /Relink/ }).className).toContain("primary");
    expect(within(card("Gudang")).getByTestId("fix").textContent).toMatch(/banned by WhatsApp until 24 Dec/);
    expect(within(card("Gudang")).getByRole("button", { name: /Relink/ }).className).not.toContain("primary");
  });

  it("a linked WhatsApp card shows its number and profile name, and its alerts name the phone", async () => {
    const b = new FakeBackend([
      makeCard(1, { name: "Toko", kind: "whatsapp", target: "WhatsApp", remote_id: "+6281234567890", remote_name: "Mawar" }),
    ]);
    await mount(b);
    expect(within(card("Toko")).getByText("+62 812-3456-7890 · Mawar")).toBeTruthy();
    act(() => b.emitAlert({ kind: "down", account: 1, name: "Toko", since: "2026-12-03T10:00:00Z", reason: null, drops: 0, window_s: 0, down: 0, needs_operator: 0, unstable: 0, examples: [] }));
    await waitFor(() => expect(b.calls.some(([c, args]) => c === "notify" && JSON.stringify(args).includes("Toko (+62 812-3456-7890)"))).toBe(true));
  });

  it("the theme choice is applied to the document", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    fireEvent.click(await screen.findByLabelText("Dark"));
    await waitFor(() => expect(document.documentElement.dataset.theme).toBe("dark"));
    expect(b.prefs.theme).toBe("dark");
  });

  it("settings show the version and the data folder that uninstalling keeps", async () => {
    const b = new FakeBackend([makeCard(1)]);
    b.version = "9.8.7";
    b.dataDir = "/home/op/.local/share/lifeline";
    await mount(b);
    fireEvent.click(screen.getByRole("button", { name: "Settings" }));
    const about = await screen.findByTestId("about");
    expect(about.textContent).toContain("Lifeline 9.8.7");
    expect(about.textContent).toContain("/home/op/.local/share/lifeline");
    expect(about.textContent).toContain("keeps this folder");
  });
});

import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { afterEach, describe, expect, it, vi } from "vitest";

import { App } from "../src/app";
import { BackendError } from "../src/backend";
import { FleetSettings } from "../src/console";
import { FakeBackend, makeCard } from "../src/fake-backend";

afterEach(cleanup);

const card = (name: string) => screen.getByRole("heading", { name }).closest("article") as HTMLElement;

async function mount(backend: FakeBackend) {
  render(<App backend={backend} />);
  await screen.findByRole("switch");
}

function fleetOf(b: FakeBackend) {
  b.fleetStore = "postgres://ops@db.lan/lifeline";
  b.fleet_ = {
    url: "",
    accounts: 3,
    leases_held: 2,
    live_instances: 1,
    takeovers: 4,
    renew_failures: 1,
    stale_writes_refused: 2,
    instances: [
      {
        instance: "a1b2c3d4",
        host: "ops-1",
        pid: 4242,
        alive: true,
        heartbeat_age_s: 1.25,
        leases: 2,
        max_accounts: null,
        takeovers: 4,
        renew_failures: 1,
        stale_writes_refused: 2,
      },
      {
        instance: "e5f6a7b8",
        host: "ops-2",
        pid: 77,
        alive: false,
        heartbeat_age_s: 93,
        leases: 0,
        max_accounts: 100,
        takeovers: 0,
        renew_failures: 0,
        stale_writes_refused: 0,
      },
    ],
  };
}

describe("fleet console", () => {
  it("cards say which instance supervises them, and the fleet view lists the instances", async () => {
    const b = new FakeBackend([
      makeCard(1, { name: "Shop A", owner: { instance: "a1b2c3d4", host: "ops-1", pid: 4242 } }),
      makeCard(2, { name: "Shop B", state: "stopped", desired: false }),
    ]);
    fleetOf(b);
    await mount(b);
    expect(within(card("Shop A")).getByTestId("owner").textContent).toContain("on ops-1 · pid 4242");
    expect(within(card("Shop B")).getByTestId("owner").textContent).toContain("no instance holds it");
    // A new owner arrives as any other card change.
    b.set(2, { owner: { instance: "e5f6a7b8", host: "ops-2", pid: 77 }, state: "connected", desired: true });
    await waitFor(() => expect(within(card("Shop B")).getByTestId("owner").textContent).toContain("on ops-2 · pid 77"));

    fireEvent.click(screen.getByTestId("open-fleet"));
    const view = await screen.findByTestId("fleet-view");
    await waitFor(() => expect(within(view).getAllByTestId("instance")).toHaveLength(2));
    expect(within(view).getByTestId("fleet-summary").textContent).toBe("1 of 2 instances alive · 2 of 3 accounts supervised");
    expect(view.textContent).toContain("4 takeovers · 1 failed renewals · 2 stale writes refused");
    const [live, gone] = within(view).getAllByTestId("instance");
    expect(live.dataset.alive).toBe("true");
    expect(live.textContent).toContain("ops-1");
    expect(live.textContent).toContain("1.3 s ago");
    expect(gone.dataset.alive).toBe("false");
    expect(within(gone).getByTestId("instance-leases").textContent).toBe("0 / 100");

    // Settings: connected to the fleet, and the HTTP API left to the instances.
    fireEvent.click(screen.getByRole("button", { name: /Back/ }));
    fireEvent.click(screen.getByTestId("open-settings"));
    expect((await screen.findByTestId("fleet-connected")).textContent).toContain("postgres://ops@db.lan/lifeline");
    expect(screen.getByTestId("console-api").textContent).toContain("lifeline serve --store");
    expect(screen.queryByRole("checkbox", { name: /HTTP API/ })).toBeNull();
  });

  it("a computer supervising its own accounts shows no owners and no fleet view", async () => {
    const b = new FakeBackend([makeCard(1, { name: "Shop A" })]);
    await mount(b);
    expect(within(card("Shop A")).queryByTestId("owner")).toBeNull();
    expect(screen.queryByTestId("open-fleet")).toBeNull();
    fireEvent.click(screen.getByTestId("open-settings"));
    await screen.findByTestId("fleet-form");
    expect(screen.queryByTestId("console-api")).toBeNull();
  });

  it("connecting shows the store's refusal and changes nothing; a connection that works reloads the window", async () => {
    const b = new FakeBackend();
    const switched = vi.fn();
    render(<FleetSettings backend={b} onSwitched={switched} />);
    const form = await screen.findByTestId("fleet-form");
    const url = within(form).getByRole("textbox", { name: /Fleet store URL/ });
    const password = form.querySelector("input[name=fleet-password]") as HTMLInputElement;
    fireEvent.input(url, { target: { value: " postgres://ops@db.lan/lifeline " } });
    fireEvent.input(password, { target: { value: "wrong" } });
    fireEvent.submit(form);
    expect((await screen.findByTestId("fleet-error")).textContent).toContain("wrong or missing password");
    expect(switched).not.toHaveBeenCalled();
    expect(b.fleetStore).toBeNull();

    fireEvent.input(password, { target: { value: "right" } });
    fireEvent.submit(form);
    await waitFor(() => expect(switched).toHaveBeenCalledTimes(1));
    expect(b.fleetStore).toBe("postgres://ops@db.lan/lifeline");
    expect(b.calls.filter(([c]) => c === "connectFleet").map(([, u]) => u)).toEqual([
      "postgres://ops@db.lan/lifeline",
      "postgres://ops@db.lan/lifeline",
    ]);
    expect(b.keptPassword).toBe("right");
    // The password does not stay in the form.
    expect(password.value).toBe("");
    // Kept: connecting again with the field empty uses it.
    b.fleetStore = null;
    fireEvent.submit(form);
    await waitFor(() => expect(switched).toHaveBeenCalledTimes(2));
    expect(b.fleetStore).toBe("postgres://ops@db.lan/lifeline");
  });

  it("a console can leave its fleet from Settings", async () => {
    const b = new FakeBackend();
    fleetOf(b);
    const switched = vi.fn();
    render(<FleetSettings backend={b} onSwitched={switched} />);
    expect((await screen.findByTestId("fleet-connected")).textContent).toContain("postgres://ops@db.lan/lifeline");
    fireEvent.click(screen.getByTestId("fleet-disconnect"));
    await waitFor(() => expect(switched).toHaveBeenCalledTimes(1));
    expect(b.fleetStore).toBeNull();
  });

  it("a fleet store that cannot be reached at start can be left from the error screen", async () => {
    const b = new FakeBackend();
    fleetOf(b);
    b.snapshot = () =>
      Promise.reject(new BackendError("storage", "cannot reach the fleet store at db.lan:5432: connection refused"));
    const reload = vi.fn();
    vi.stubGlobal("location", { ...window.location, reload });
    try {
      render(<App backend={b} />);
      await screen.findByText(/cannot reach the fleet store/);
      fireEvent.click(await screen.findByTestId("fleet-leave"));
      await waitFor(() => expect(b.fleetStore).toBeNull());
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { afterEach, describe, expect, it } from "vitest";

import { App } from "../src/app";
import { BackendError } from "../src/backend";
import { FakeBackend, makeCard } from "../src/fake-backend";

afterEach(cleanup);

async function settings(b: FakeBackend) {
  render(<App backend={b} />);
  await screen.findByRole("switch");
  fireEvent.click(screen.getByRole("button", { name: "Settings" }));
  return screen.findByTestId("integrations");
}

describe("settings → integrations", () => {
  it("adds an endpoint for chosen messages and shows its secret once", async () => {
    const b = new FakeBackend([makeCard(1)]);
    const page = within(await settings(b));
    const form = page.getByTestId("webhook-form");
    fireEvent.input(within(form).getByLabelText("Endpoint URL"), { target: { value: "https://crm.example/hooks" } });
    fireEvent.click(within(form).getByLabelText("needs you"));
    fireEvent.click(within(form).getByLabelText("alerts"));
    fireEvent.submit(form);
    const dialog = await screen.findByRole("dialog", { name: "Signing secret for https://crm.example/hooks" });
    const secret = (within(dialog).getByRole("textbox") as HTMLInputElement).value;
    expect(secret).toMatch(/^whsec_/);
    expect(b.calls.find(([c]) => c === "addWebhook")?.[1]).toEqual({
      url: "https://crm.example/hooks",
      events: ["needs_operator", "alert"],
    });
    fireEvent.click(within(dialog).getByRole("button", { name: "I have copied it" }));
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    expect(document.body.textContent).not.toContain(secret);
    const item = await page.findByTestId("webhook-1");
    expect(item.textContent).toContain("needs you, alerts");
    expect(item.textContent).toContain("On");
  });

  it("refuses a bad URL in the engine's words and adds nothing", async () => {
    const b = new FakeBackend([makeCard(1)]);
    const page = within(await settings(b));
    const form = page.getByTestId("webhook-form");
    fireEvent.input(within(form).getByLabelText("Endpoint URL"), { target: { value: "ftp://x" } });
    fireEvent.submit(form);
    expect((await page.findByTestId("webhook-msg")).textContent).toContain("Invalid webhook URL 'ftp://x'");
    expect(b.webhooks.size).toBe(0);
    expect(screen.queryByRole("dialog")).toBeNull();
  });

  it("a test shows the receiver's answer and the delivery, which can be sent again", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await b.addWebhook({ url: "http://127.0.0.1:9/hook", events: [] });
    b.receiverAnswers = 503;
    const page = within(await settings(b));
    const item = within(await page.findByTestId("webhook-1"));
    expect(item.getByText(/everything/)).toBeTruthy();
    fireEvent.click(item.getByRole("button", { name: "Send test" }));
    expect((await page.findByTestId("webhook-msg")).textContent).toContain("Test message not delivered: 503");
    const rows = within(await page.findByTestId("deliveries-1"));
    expect(rows.getByText("webhook.test")).toBeTruthy();
    expect(rows.getByText("failed")).toBeTruthy();
    fireEvent.click(rows.getByRole("button", { name: "Send again" }));
    await waitFor(() => expect(within(page.getByTestId("deliveries-1")).getByText("waiting")).toBeTruthy());
    expect(b.calls.some(([c, id]) => c === "replayDelivery" && id === 1)).toBe(true);
  });

  it("turning an endpoint off and on, and removing it", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await b.addWebhook({ url: "https://a.example/h", events: [] });
    const page = within(await settings(b));
    const item = within(await page.findByTestId("webhook-1"));
    fireEvent.click(item.getByRole("button", { name: "Turn off" }));
    await waitFor(() => expect(page.getByTestId("webhook-1").textContent).toContain("Off: turned off by the operator"));
    fireEvent.click(within(page.getByTestId("webhook-1")).getByRole("button", { name: "Turn on" }));
    await waitFor(() => expect(b.webhooks.get(1)?.enabled).toBe(true));
    fireEvent.click(page.getByRole("button", { name: "Remove endpoint https://a.example/h" }));
    await waitFor(() => expect(page.queryByTestId("webhook-1")).toBeNull());
    expect(page.getByText("No endpoints yet.")).toBeTruthy();
  });

  it("an endpoint the sender turns off raises a desktop notification and shows why", async () => {
    const b = new FakeBackend([makeCard(1)]);
    await b.addWebhook({ url: "https://gone.example/h", events: [] });
    const page = within(await settings(b));
    await page.findByTestId("webhook-1");
    b.emitWebhookOff({ endpoint: 1, url: "https://gone.example/h", reason: "it answered 410 Gone" });
    await waitFor(() => expect(page.getByTestId("webhook-1").textContent).toContain("Off: it answered 410 Gone"));
    const notified = b.calls.find(([c]) => c === "notify")?.[1] as { title: string; body: string };
    expect(notified.title).toBe("Webhook endpoint turned off");
    expect(notified.body).toContain("https://gone.example/h: it answered 410 Gone");
  });

  it("the HTTP API switch saves the port, says when the token is missing, and keeps the old value on a refusal", async () => {
    const b = new FakeBackend([makeCard(1)]);
    const page = within(await settings(b));
    fireEvent.input(page.getByRole("textbox", { name: "HTTP API port" }), { target: { value: "7811" } });
    fireEvent.click(page.getByRole("checkbox", { name: /Serve the HTTP API/ }));
    await waitFor(() => expect(b.prefs.http_api).toBe(true));
    expect(b.prefs.http_port).toBe(7811);
    expect(page.getByText(/Set the secret 'http-token' first/)).toBeTruthy();
    expect(page.getByText(/http:\/\/127\.0\.0\.1:7811\/openapi\.json/)).toBeTruthy();
    b.failNext = new BackendError("invalid_input", "The HTTP API cannot listen on 127.0.0.1:80 (permission denied): pick another port.");
    const port = page.getByRole("textbox", { name: "HTTP API port" });
    fireEvent.input(port, { target: { value: "80" } });
    fireEvent.change(port);
    expect((await page.findByRole("alert")).textContent).toContain("pick another port");
    expect(b.prefs.http_port).toBe(7811);
  });

  it("reads in Bahasa Indonesia", async () => {
    const b = new FakeBackend([makeCard(1)]);
    b.prefs = { ...b.prefs, language: "id" };
    render(<App backend={b} />);
    await screen.findByRole("switch");
    fireEvent.click(screen.getByRole("button", { name: "Pengaturan" }));
    const page = within(await screen.findByTestId("integrations"));
    expect(page.getByRole("heading", { name: "Integrasi" })).toBeTruthy();
    expect(page.getByRole("button", { name: "Tambah endpoint" })).toBeTruthy();
  });
});

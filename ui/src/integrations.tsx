// Settings → Integrations: the HTTP API switch and the webhook endpoints (add with the secret
// shown once, test, turn off and on, new secret, remove) with each endpoint's latest deliveries
// and their answers, re-sendable.

import { useContext, useEffect, useRef, useState } from "preact/hooks";

import { type Backend, BackendError } from "./backend";
import { ConsoleMode } from "./console";
import { ErrorText, Modal } from "./dialogs";
import { dateTime } from "./format";
import type { DeliveryInfo, Prefs, WebhookInfo, WebhookSecret } from "./generated/api";
import { type Key, useI18n } from "./i18n";

/** The message kinds an endpoint can ask for (the engine's names). */
export const HOOK_EVENTS = ["state", "connected", "dropped", "needs_operator", "paused", "alert"] as const;
const TOKEN_SECRET = "http-token";
const SHOWN_DELIVERIES = 20;

type Msg = { ok: boolean; text: string } | null;

export function Integrations(props: {
  backend: Backend;
  prefs: Prefs;
  /** Saves preferences; rejects with the shell's words (a port in use). */
  savePrefs: (p: Prefs) => Promise<void>;
  secrets: string[];
}) {
  const { t } = useI18n();
  const { backend, prefs } = props;
  const [port, setPort] = useState(String(prefs.http_port));
  // What is typed, read when the switch flips: the switch's handler may run before the field's
  // last keystroke has re-rendered this component.
  const typed = useRef(String(prefs.http_port));
  const [apiError, setApiError] = useState<string | null>(null);
  const [hooks, setHooks] = useState<WebhookInfo[]>([]);
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<string[]>([]);
  const [msg, setMsg] = useState<Msg>(null);
  const [shown, setShown] = useState<WebhookSecret | null>(null);
  const [open, setOpen] = useState<number | null>(null);
  /** Bumped to reload the open deliveries after something changed them. */
  const [reload, setReload] = useState(0);
  const refresh = () => backend.listWebhooks().then(setHooks, (e) => setMsg({ ok: false, text: BackendError.from(e).message }));
  useEffect(() => {
    void refresh();
    return backend.onWebhookOff(() => void refresh());
  }, []);
  useEffect(() => {
    typed.current = String(prefs.http_port);
    setPort(typed.current);
  }, [prefs.http_port]);

  const setApi = async (on: boolean) => {
    const n = Number(typed.current);
    if (!Number.isInteger(n) || n < 1 || n > 65535) {
      setApiError(t("notANumber", { key: t("httpApi") }));
      return;
    }
    try {
      await props.savePrefs({ ...prefs, http_api: on, http_port: n });
      setApiError(null);
    } catch (e) {
      setApiError(BackendError.from(e).message);
    }
  };
  const run = async (f: () => Promise<unknown>, ok?: string) => {
    try {
      await f();
      setMsg(ok ? { ok: true, text: ok } : null);
    } catch (e) {
      setMsg({ ok: false, text: BackendError.from(e).message });
    }
    await refresh();
  };
  const add = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const created = await backend.addWebhook({ url: url.trim(), events });
      setShown(created);
      setUrl("");
      setEvents([]);
    });
  };
  const test = async (h: WebhookInfo) => {
    try {
      const d = await backend.testWebhook(h.id);
      setMsg(
        d.state === "delivered"
          ? { ok: true, text: t("testDelivered", { code: d.last_code ?? "" }) }
          : { ok: false, text: t("testFailed", { why: answer(d) }) },
      );
      // The test is the newest delivery: show it.
      setOpen(h.id);
      setReload((r) => r + 1);
    } catch (e) {
      setMsg({ ok: false, text: BackendError.from(e).message });
    }
    await refresh();
  };
  const toggle = (e: Event, name: string) => {
    const on = (e.currentTarget as HTMLInputElement).checked;
    setEvents(on ? [...events, name] : events.filter((x) => x !== name));
  };
  const apiUrl = `http://127.0.0.1:${prefs.http_port}/openapi.json`;
  // A console supervises nothing: the fleet's instances serve the API.
  const inConsole = useContext(ConsoleMode);
  return (
    <section aria-labelledby="s-integrations" class="wide" data-testid="integrations">
      <h3 id="s-integrations">{t("integrations")}</h3>
      <h4>{t("httpApi")}</h4>
      {inConsole ? (
        <p class="help" data-testid="console-api">
          {t("httpApiConsole")}
        </p>
      ) : (
        <>
          <div class="row">
            <label class="check">
              <input
                type="checkbox"
                name="http_api"
                checked={prefs.http_api}
                onChange={(e) => void setApi((e.currentTarget as HTMLInputElement).checked)}
              />{" "}
              {t("httpApiOn")}
            </label>
            <input
              name="http_port"
              aria-label={t("httpPort")}
              inputMode="numeric"
              size={6}
              value={port}
              onInput={(e) => {
                typed.current = (e.currentTarget as HTMLInputElement).value;
                setPort(typed.current);
              }}
              onChange={() => prefs.http_api && void setApi(true)}
            />
          </div>
          <p class="help">{t("httpApiHelp", { secret: TOKEN_SECRET, url: apiUrl })}</p>
          {prefs.http_api && !props.secrets.includes(TOKEN_SECRET) && (
            <p class="error" role="status">
              {t("httpApiNoToken", { secret: TOKEN_SECRET })}
            </p>
          )}
          <ErrorText error={apiError} />
        </>
      )}

      <h4>{t("webhooks")}</h4>
      <p class="help">{t("webhooksHelp")}</p>
      {hooks.length === 0 ? (
        <p>{t("noWebhooks")}</p>
      ) : (
        <ul class="hook-list" data-testid="webhook-list">
          {hooks.map((h) => (
            <li key={h.id} data-testid={`webhook-${h.id}`}>
              <div class="hook-head">
                <code>{h.url}</code>
                <span class={h.enabled ? "ok" : "error"}>
                  {h.enabled ? t("hookOn") : t("hookOff", { reason: h.disabled_reason ?? "" })}
                </span>
                {h.failing_since && <span class="error">{t("hookFailing", { at: dateTime(h.failing_since, prefs.language) })}</span>}
              </div>
              <p class="help">
                {t("webhookEvents")}: {h.events ? h.events.map((e) => t(`hookEvent.${e}` as Key)).join(", ") : t("allEvents")}
              </p>
              <div class="row">
                <button type="button" class="small" onClick={() => void test(h)}>
                  {t("testHook")}
                </button>
                <button
                  type="button"
                  class="small"
                  onClick={() => void run(() => backend.setWebhookEnabled(h.id, !h.enabled))}
                >
                  {h.enabled ? t("turnOff") : t("turnOn")}
                </button>
                <button
                  type="button"
                  class="small"
                  aria-expanded={open === h.id}
                  onClick={() => setOpen(open === h.id ? null : h.id)}
                >
                  {t("deliveries")}
                </button>
                <button type="button" class="small" onClick={() => void run(async () => setShown(await backend.rotateWebhookSecret(h.id)))}>
                  {t("rotateSecret")}
                </button>
                <button
                  type="button"
                  class="danger small"
                  aria-label={t("removeHook", { url: h.url })}
                  onClick={() => void run(() => backend.removeWebhook(h.id))}
                >
                  {t("remove")}
                </button>
              </div>
              {open === h.id && <Deliveries key={reload} backend={backend} endpoint={h.id} />}
            </li>
          ))}
        </ul>
      )}
      <form onSubmit={add} data-testid="webhook-form">
        <label>
          {t("webhookUrl")}
          <input
            name="webhook-url"
            type="url"
            required
            placeholder="https://crm.example/hooks"
            value={url}
            onInput={(e) => setUrl((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <fieldset class="row">
          <legend>
            {t("webhookEvents")} ({events.length === 0 ? t("allEvents") : events.length})
          </legend>
          {HOOK_EVENTS.map((name) => (
            <label key={name} class="check">
              <input type="checkbox" name={`hook-event-${name}`} checked={events.includes(name)} onChange={(e) => toggle(e, name)} />{" "}
              {t(`hookEvent.${name}` as Key)}
            </label>
          ))}
        </fieldset>
        <button type="submit" class="primary">
          {t("addWebhook")}
        </button>
      </form>
      {msg && (
        <p class={msg.ok ? "ok" : "error"} role={msg.ok ? "status" : "alert"} data-testid="webhook-msg">
          {msg.text}
        </p>
      )}
      {shown && (
        <Modal title={t("secretOnceTitle", { url: shown.endpoint.url })} onClose={() => setShown(null)} testid="webhook-secret">
          <p>{t("secretOnceBody")}</p>
          <input readOnly name="webhook-secret" value={shown.secret} onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
          <footer>
            <button type="button" class="primary" onClick={() => setShown(null)}>
              {t("secretCopied")}
            </button>
          </footer>
        </Modal>
      )}
    </section>
  );
}

/** The receiver's answer in a few words: its status code, or what went wrong. */
function answer(d: DeliveryInfo): string {
  if (d.last_code !== null) return String(d.last_code);
  return d.last_error ?? "—";
}

function Deliveries(props: { backend: Backend; endpoint: number }) {
  const { t, lang } = useI18n();
  const [list, setList] = useState<DeliveryInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () =>
    props.backend.webhookDeliveries(props.endpoint, SHOWN_DELIVERIES).then(setList, (e) => setError(BackendError.from(e).message));
  useEffect(() => {
    void load();
  }, [props.endpoint]);
  const resend = async (id: number) => {
    try {
      await props.backend.replayDelivery(id);
      setError(null);
    } catch (e) {
      setError(BackendError.from(e).message);
    }
    await load();
  };
  if (!list) return <ErrorText error={error} />;
  return (
    <div class="table-wrap" data-testid={`deliveries-${props.endpoint}`}>
      {list.length === 0 ? (
        <p>{t("noDeliveries")}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">{t("lastChange")}</th>
              <th scope="col">{t("webhookEvents")}</th>
              <th scope="col">{t("stateCol")}</th>
              <th scope="col">{t("deliveryAnswer")}</th>
              <th scope="col">{t("deliveryAttempts")}</th>
              <th scope="col">
                <span class="sr-only">{t("resend")}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((d) => (
              <tr key={d.id}>
                <td>{dateTime(d.at, lang)}</td>
                <td>
                  <code>{d.kind}</code>
                </td>
                <td class={d.state === "failed" ? "error" : d.state === "delivered" ? "ok" : ""}>{t(`delivery.${d.state}` as Key)}</td>
                <td>{answer(d)}</td>
                <td>{d.attempts}</td>
                <td>
                  {d.state !== "pending" && (
                    <button type="button" class="small" onClick={() => void resend(d.id)}>
                      {t("resend")}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ErrorText error={error} />
    </div>
  );
}

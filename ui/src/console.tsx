// The desktop as a fleet's console: Settings' "Connect to a fleet", the fleet view (instances,
// their load and heartbeats) and the owning instance on a card. Connecting or leaving a fleet
// changes what the whole window shows, so the window reloads after either.

import { createContext } from "preact";
import { useEffect, useState } from "preact/hooks";

import { type Backend, BackendError } from "./backend";
import type { Card, Connection, FleetStatus } from "./generated/api";
import { useI18n } from "./i18n";

/** How often the open fleet view reads the instances again (heartbeat ages move). */
export const FLEET_VIEW_EVERY_MS = 2000;

/** Reloads the window into what the shell now works on. */
export const reloadWindow = () => window.location.reload();

/** Settings' fleet section: connect with a URL and a password, or leave the fleet. */
export function FleetSettings({
  backend,
  onSwitched = reloadWindow,
}: {
  backend: Backend;
  onSwitched?: () => void;
}) {
  const { t } = useI18n();
  const [conn, setConn] = useState<Connection | null>(null);
  const [url, setUrl] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    backend.connection().then(setConn, () => setConn(null));
  }, [backend]);
  // Connecting and leaving both end in a reload, or in the shell's one-line refusal.
  const switchTo = async (step: () => Promise<unknown>) => {
    setBusy(true);
    try {
      await step();
      setError(null);
      onSwitched();
    } catch (err) {
      setError(BackendError.from(err).message);
    } finally {
      setBusy(false);
    }
  };
  const connect = (e: Event) => {
    e.preventDefault();
    return switchTo(async () => {
      await backend.connectFleet({ url: url.trim(), password });
      setPassword("");
    });
  };
  const leave = () => switchTo(() => backend.disconnectFleet());
  return (
    <section aria-labelledby="s-fleet" data-testid="fleet-settings">
      <h3 id="s-fleet">{t("fleetTitle")}</h3>
      <p class="help">{t("fleetHelp")}</p>
      {conn?.fleet_store ? (
        <>
          <p data-testid="fleet-connected">{t("fleetConnected", { url: conn.fleet_store })}</p>
          {conn.from_environment ? (
            <p class="help">{t("fleetFromEnv")}</p>
          ) : (
            <button type="button" data-testid="fleet-disconnect" disabled={busy} onClick={leave}>
              {t("fleetDisconnect")}
            </button>
          )}
        </>
      ) : (
        <form onSubmit={connect} data-testid="fleet-form">
          <label>
            {t("fleetUrl")}
            <input
              name="fleet-url"
              required
              placeholder="postgres://ops@db.lan/lifeline"
              aria-describedby="fleet-url-help"
              value={url}
              onInput={(e) => setUrl((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <p class="help" id="fleet-url-help">
            {t("fleetUrlHelp")}
          </p>
          <label>
            {t("fleetPassword")}
            <input
              name="fleet-password"
              type="password"
              autocomplete="off"
              aria-describedby="fleet-password-help"
              value={password}
              onInput={(e) => setPassword((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <p class="help" id="fleet-password-help">
            {t("fleetPasswordHelp")}
          </p>
          <button type="submit" class="primary" disabled={busy} data-testid="fleet-connect">
            {busy ? t("fleetConnecting") : t("fleetConnect")}
          </button>
        </form>
      )}
      {error && (
        <p class="error" role="alert" data-testid="fleet-error">
          {error}
        </p>
      )}
    </section>
  );
}

/** The fleet view: every instance with its load and last heartbeat, and the fleet's totals. */
export function FleetView({ backend, onBack }: { backend: Backend; onBack: () => void }) {
  const { t, lang } = useI18n();
  const [status, setStatus] = useState<FleetStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const read = () =>
      backend.fleetStatus().then(
        (s) => {
          if (!live) return;
          setStatus(s);
          setError(null);
        },
        (e) => live && setError(BackendError.from(e).message),
      );
    void read();
    const timer = setInterval(read, FLEET_VIEW_EVERY_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [backend]);
  const seconds = new Intl.NumberFormat(lang, { maximumFractionDigits: 1, minimumFractionDigits: 1 });
  return (
    <section class="fleet-view" aria-labelledby="fleet-view-title" data-testid="fleet-view">
      <header class="detail-head">
        <button type="button" onClick={onBack}>
          ← {t("back")}
        </button>
        <h2 id="fleet-view-title">{t("fleetView")}</h2>
      </header>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {status && (
        <>
          <p>
            <code>{status.url}</code>
          </p>
          <p data-testid="fleet-summary">
            {t("fleetSummary", {
              live: status.live_instances,
              total: status.instances.length,
              held: status.leases_held,
              accounts: status.accounts,
            })}
          </p>
          <p class="help">
            {t("fleetCounters", {
              takeovers: status.takeovers,
              renew: status.renew_failures,
              stale: status.stale_writes_refused,
            })}
          </p>
          <h3>{t("fleetInstances")}</h3>
          {status.instances.length === 0 ? (
            <p class="empty">{t("fleetNoInstances")}</p>
          ) : (
            <table data-testid="instances">
              <thead>
                <tr>
                  <th scope="col">{t("instanceCol")}</th>
                  <th scope="col">{t("hostCol")}</th>
                  <th scope="col">{t("pidCol")}</th>
                  <th scope="col">{t("aliveCol")}</th>
                  <th scope="col">{t("leasesCol")}</th>
                  <th scope="col">{t("heartbeatCol")}</th>
                </tr>
              </thead>
              <tbody>
                {status.instances.map((i) => (
                  <tr key={i.instance} data-testid="instance" data-alive={String(i.alive)} data-pid={i.pid}>
                    <td>
                      <code>{i.instance}</code>
                    </td>
                    <td>{i.host}</td>
                    <td>{i.pid}</td>
                    <td>{i.alive ? t("yes") : t("no")}</td>
                    <td data-testid="instance-leases">
                      {i.max_accounts === null ? i.leases : `${i.leases} / ${i.max_accounts}`}
                    </td>
                    <td>{t("heartbeatAgo", { s: seconds.format(i.heartbeat_age_s) })}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}

/** Whether the window is a fleet's console (cards then say which instance supervises them). */
export const ConsoleMode = createContext(false);

/** A console's card line: the instance supervising the account now. */
export function Owner({ card }: { card: Card }) {
  const { t } = useI18n();
  const text = card.owner ? t("ownerOn", { host: card.owner.host, pid: card.owner.pid }) : t("ownerNone");
  return (
    <p class="owner" data-testid="owner" data-instance={card.owner?.instance ?? ""} title={text}>
      {text}
    </p>
  );
}

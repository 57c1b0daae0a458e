// The main window: fleet header, card grid, and the detail / settings views and dialogs.
// State comes from one snapshot, then only from events (no polling).

import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "preact/hooks";

import { type Backend, BackendError, DEFAULT_PREFS } from "./backend";
import { type CardAction, CardGrid } from "./card";
import { ConsoleMode, FleetView, reloadWindow } from "./console";
import { AddAccount, ConfirmRemove, ExportDialog, LinkModal } from "./dialogs";
import { Fleet, STATES, filterCards } from "./fleet";
import { phoneNumber } from "./format";
import type { AlertInfo, Card, Kind, LinkInfo, LinkRequest, Prefs, Snapshot, StateName } from "./generated/api";
import { I18n, alertText, stateLabel, trayLabels, translator, useI18n } from "./i18n";
import { Detail, Settings } from "./views";

/** An alert as the banner shows it. */
type Alert = { kind: AlertInfo["kind"]; title: string; body: string };

type View = { name: "fleet" } | { name: "detail"; id: number } | { name: "settings" } | { name: "instances" };
type Dialog =
  | { name: "add"; kind?: Kind }
  | { name: "export" }
  | { name: "remove"; card: Card }
  | { name: "link"; id: number; request: LinkRequest }
  | null;

function useFleetVersion(fleet: Fleet): number {
  const [v, setV] = useState(fleet.version);
  useEffect(() => fleet.subscribe(() => setV(fleet.version)), [fleet]);
  return v;
}

/** Applies the theme to the document: light, dark, or whatever the system prefers. */
export function applyTheme(theme: Prefs["theme"]) {
  document.documentElement.dataset.theme = theme;
}

export function App({ backend }: { backend: Backend }) {
  const fleet = useMemo(() => new Fleet(), []);
  const [snapshot, setSnapshot] = useState<Snapshot | null>(null);
  const [fatal, setFatal] = useState<string | null>(null);
  const [prefs, setPrefs] = useState<Prefs>(DEFAULT_PREFS);
  const [autorecover, setAutorecover] = useState(true);
  const [alerts, setAlerts] = useState<Alert[]>([]);
  // Alerts are worded when they arrive, in the language of that moment.
  const words = useRef({ t: translator(prefs.language), lang: prefs.language });
  // Link codes can arrive before the QR modal opens, so they are collected from the start.
  const [links, setLinks] = useState<Record<number, LinkInfo>>({});
  // A layout effect: the fleet is asked for right after the first render, not after its paint.
  useLayoutEffect(() => {
    const unwatch = backend.onFleet((d) => {
      const start = performance.now();
      fleet.apply(d);
      // Applying and rendering a delta, for the responsiveness measurement (ui/e2e/perf).
      queueMicrotask(() => performance.measure("lifeline:delta", { start, detail: d.cards.length }));
    });
    const subs = [
      unwatch,
      backend.onLink((l) => setLinks((all) => ({ ...all, [l.account]: l }))),
      backend.onSettings((s) => setAutorecover(s.autorecover)),
      backend.onAlert((a) => {
        // Which phone (or creator): a WhatsApp number's alerts name it beside the account, a
        // TikTok account's its @user.
        const card = a.account === null ? undefined : fleet.get(a.account);
        const who = card?.remote_id ? (card.kind === "whatsapp" ? phoneNumber(card.remote_id) : card.remote_id) : null;
        const named = who && a.name ? { ...a, name: `${a.name} (${who})` } : a;
        const text = alertText(named, words.current.t, words.current.lang);
        setAlerts((list) => [{ kind: a.kind, ...text }, ...list].slice(0, 3));
        void backend.notify(text).catch(() => undefined);
      }),
      backend.onWebhookOff((w) => {
        const { t } = words.current;
        const text = { title: t("webhookOffTitle"), body: t("webhookOffBody", { url: w.url, reason: w.reason }) };
        setAlerts((list) => [{ kind: "summary" as const, ...text }, ...list].slice(0, 3));
        void backend.notify(text).catch(() => undefined);
      }),
    ];
    performance.mark("lifeline:snapshot-asked");
    backend.snapshot().then(
      (s) => {
        performance.mark("lifeline:snapshot-received");
        fleet.reset(s.cards, s.seq);
        setAutorecover(s.autorecover);
        setSnapshot(s);
        // For the start-up measurement: the first frame with cards.
        requestAnimationFrame(() => performance.mark("lifeline:cards-painted"));
      },
      (e) => {
        // No fleet to apply changes to: stop collecting them (alerts still come).
        unwatch();
        setFatal(BackendError.from(e).message);
      },
    );
    backend.getPrefs().then(setPrefs, () => undefined);
    return () => subs.forEach((u) => u());
  }, [backend]);
  useEffect(() => applyTheme(prefs.theme), [prefs.theme]);
  useEffect(() => {
    document.documentElement.lang = prefs.language;
  }, [prefs.language]);
  const i18n = useMemo(() => ({ t: translator(prefs.language), lang: prefs.language }), [prefs.language]);
  words.current = i18n;
  useEffect(() => {
    void backend.setTrayLabels(trayLabels(i18n.t)).catch(() => undefined);
  }, [backend, i18n]);
  return (
    <I18n.Provider value={i18n}>
      {fatal ? (
        <Fatal backend={backend} message={fatal} />
      ) : (
        <ConsoleMode.Provider value={Boolean(snapshot?.fleet_store)}>
          <Main
            backend={backend}
            fleet={fleet}
            snapshot={snapshot}
            autorecover={autorecover}
            setAutorecover={setAutorecover}
            prefs={prefs}
            setPrefs={setPrefs}
            alerts={alerts}
            links={links}
            forgetLink={(id) => setLinks(({ [id]: _, ...rest }) => rest)}
            dismissAlert={(i) => setAlerts((l) => l.filter((_, j) => j !== i))}
          />
        </ConsoleMode.Provider>
      )}
    </I18n.Provider>
  );
}

/** Why the window cannot show the fleet; a fleet store that cannot be reached can be left. */
function Fatal({ backend, message }: { backend: Backend; message: string }) {
  const { t } = useI18n();
  const [leavable, setLeavable] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    backend.connection().then(
      (c) => setLeavable(Boolean(c.fleet_store) && !c.from_environment),
      () => undefined,
    );
  }, [backend]);
  const leave = () =>
    backend.disconnectFleet().then(reloadWindow, (e) => setError(BackendError.from(e).message));
  return (
    <main class="fatal" role="alert">
      <h1>{t("unavailable")}</h1>
      <p>{message}</p>
      {leavable && (
        <button type="button" data-testid="fleet-leave" onClick={leave}>
          {t("consoleUnreachable")}
        </button>
      )}
      {error && <p class="error">{error}</p>}
    </main>
  );
}

function Main(props: {
  backend: Backend;
  fleet: Fleet;
  snapshot: Snapshot | null;
  autorecover: boolean;
  setAutorecover: (on: boolean) => void;
  prefs: Prefs;
  setPrefs: (p: Prefs | ((old: Prefs) => Prefs)) => void;
  alerts: Alert[];
  links: Record<number, LinkInfo>;
  forgetLink: (id: number) => void;
  dismissAlert: (i: number) => void;
}) {
  const { t } = useI18n();
  const { backend, fleet } = props;
  useFleetVersion(fleet);
  const [view, setView] = useState<View>({ name: "fleet" });
  const [dialog, setDialog] = useState<Dialog>(null);
  const [query, setQuery] = useState("");
  const [stateFilter, setStateFilter] = useState<StateName | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [now, setNow] = useState(Date.now());
  // Relative times ("3 min ago") move on; nothing is fetched.
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 30_000);
    return () => clearInterval(timer);
  }, []);
  const cards = fleet.cards();
  const counts = fleet.counts();
  const shown = filterCards(cards, query, stateFilter);
  const run = (p: Promise<unknown>) =>
    p.then(
      () => setError(null),
      (e) => setError(BackendError.from(e).message),
    );
  const onAction = (a: CardAction, c: Card) => {
    switch (a) {
      case "start":
        return run(backend.start(c.id));
      case "stop":
        return run(backend.stop(c.id));
      case "retry":
        return run(backend.retry(c.id));
      case "resetBreaker":
        return run(backend.resetBreaker(c.id));
      case "mute":
        return run(backend.setMuted(c.id, true));
      case "unmute":
        return run(backend.setMuted(c.id, false));
      case "notifyLive":
        return run(backend.setNotifyLive(c.id, true));
      case "quietLive":
        return run(backend.setNotifyLive(c.id, false));
      case "relink": {
        const request: LinkRequest = { mode: "qr" };
        props.forgetLink(c.id);
        setDialog({ name: "link", id: c.id, request });
        return run(backend.relink(c.id, request));
      }
      case "details":
        return setView({ name: "detail", id: c.id });
      case "remove":
        return setDialog({ name: "remove", card: c });
    }
  };
  const toggleAutorecover = (on: boolean) =>
    run(backend.setAutorecover(on).then((v) => props.setAutorecover(v)));
  const detailCard = view.name === "detail" ? fleet.get(view.id) : undefined;
  const linkCard = dialog?.name === "link" ? fleet.get(dialog.id) : undefined;
  return (
    <div class="app">
      <header class="fleet-head">
        <h1>{t("appTitle")}</h1>
        <nav class="counts" aria-label={t("accounts", { n: counts.total })}>
          {/* First and always there: what needs a person. */}
          <button
            type="button"
            class={`count state-needs_operator${counts.needs_operator > 0 ? " attention" : ""}`}
            aria-pressed={stateFilter === "needs_operator"}
            onClick={() => setStateFilter(stateFilter === "needs_operator" ? null : "needs_operator")}
            data-testid="count-needs_operator"
          >
            {stateLabel(t, "needs_operator")} <strong>{counts.needs_operator}</strong>
          </button>
          <button
            type="button"
            aria-pressed={stateFilter === null}
            onClick={() => setStateFilter(null)}
            data-testid="count-all"
          >
            {t("all")} <strong>{counts.total}</strong>
          </button>
          {STATES.filter((s) => s !== "needs_operator" && (counts[s] > 0 || s === "connected")).map((s) => (
            <button
              key={s}
              type="button"
              class={`count state-${s}`}
              aria-pressed={stateFilter === s}
              onClick={() => setStateFilter(stateFilter === s ? null : s)}
              data-testid={`count-${s}`}
            >
              {stateLabel(t, s)} <strong>{counts[s]}</strong>
            </button>
          ))}
        </nav>
        <label class="switch" title={t("autorecoverHelp")}>
          <input
            type="checkbox"
            role="switch"
            name="autorecover"
            data-testid="autorecover"
            checked={props.autorecover}
            onChange={(e) => toggleAutorecover((e.currentTarget as HTMLInputElement).checked)}
          />
          {t("autorecover")}
        </label>
        <div class="fleet-actions">
          <button type="button" onClick={() => run(backend.startAll())}>
            {t("startAll")}
          </button>
          <button type="button" onClick={() => run(backend.stopAll())}>
            {t("stopAll")}
          </button>
          <button type="button" onClick={() => run(backend.checkAll())}>
            {t("checkAll")}
          </button>
          <button type="button" onClick={() => setDialog({ name: "export" })}>
            {t("export")}
          </button>
          {props.snapshot?.fleet_store && (
            <button type="button" data-testid="open-fleet" onClick={() => setView({ name: "instances" })}>
              {t("fleetView")}
            </button>
          )}
          <button type="button" data-testid="open-settings" onClick={() => setView({ name: "settings" })}>
            {t("settings")}
          </button>
          <button type="button" class="primary" data-testid="add-account-button" onClick={() => setDialog({ name: "add" })}>
            {t("addAccount")}
          </button>
        </div>
      </header>
      {props.snapshot?.previous_run_crashed && <p class="notice">{t("crashed")}</p>}
      {props.snapshot && props.snapshot.held_stopped > 0 && (
        <p class="notice">{t("heldStopped", { n: props.snapshot.held_stopped })}</p>
      )}
      {props.alerts.map((a, i) => (
        <div class={`alert alert-${a.kind}`} role="alert" key={`${a.title}-${i}`}>
          <strong>{a.title}</strong> {a.body}
          <button type="button" class="icon" aria-label={t("dismiss")} onClick={() => props.dismissAlert(i)}>
            ✕
          </button>
        </div>
      ))}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <main>
        {view.name === "detail" && detailCard ? (
          <Detail backend={backend} card={detailCard} onBack={() => setView({ name: "fleet" })} />
        ) : view.name === "instances" ? (
          <FleetView backend={backend} onBack={() => setView({ name: "fleet" })} />
        ) : view.name === "settings" ? (
          <Settings
            backend={backend}
            about={props.snapshot}
            prefs={props.prefs}
            onPrefs={props.setPrefs}
            onBack={() => setView({ name: "fleet" })}
          />
        ) : (
          <>
            <div class="toolbar">
              <input
                type="search"
                placeholder={t("search")}
                aria-label={t("search")}
                value={query}
                onInput={(e) => setQuery((e.currentTarget as HTMLInputElement).value)}
              />
            </div>
            {props.snapshot && cards.length === 0 ? (
              <section class="welcome" data-testid="welcome" aria-labelledby="welcome-title">
                <h2 id="welcome-title">{t("welcomeTitle")}</h2>
                <p>{t("welcomeBody")}</p>
                <button type="button" class="primary" onClick={() => setDialog({ name: "add", kind: "whatsapp" })}>
                  {t("welcomeAdd")}
                </button>
              </section>
            ) : props.snapshot && shown.length === 0 ? (
              <p class="empty">{t("noMatch")}</p>
            ) : (
              <CardGrid cards={shown} now={now} onAction={onAction} />
            )}
          </>
        )}
      </main>
      {dialog?.name === "add" && (
        <AddAccount
          backend={backend}
          kind={dialog.kind}
          onClose={() => setDialog(null)}
          onAdded={(card, link) => {
            fleet.update([card], []);
            setDialog(link ? { name: "link", id: card.id, request: link } : null);
          }}
        />
      )}
      {dialog?.name === "export" && (
        <ExportDialog backend={backend} cards={cards} onClose={() => setDialog(null)} />
      )}
      {dialog?.name === "remove" && (
        <ConfirmRemove
          card={dialog.card}
          onCancel={() => setDialog(null)}
          onConfirm={() => {
            const id = dialog.card.id;
            setDialog(null);
            run(backend.removeAccount(id).then(() => fleet.update([], [id])));
          }}
        />
      )}
      {dialog?.name === "link" && linkCard && (
        <LinkModal
          backend={backend}
          card={linkCard}
          request={dialog.request}
          code={props.links[dialog.id] ?? null}
          onClose={() => setDialog(null)}
        />
      )}
    </div>
  );
}

// The account detail (connected-interval timeline and event log) and the settings view.

import { useEffect, useState } from "preact/hooks";

import { type Backend, BackendError, type HistoryWindow } from "./backend";
import { StateBadge } from "./card";
import { FleetSettings } from "./console";
import { ErrorText } from "./dialogs";
import type { Card, HistoryInfo, Language, LiveInfo, Prefs, Theme } from "./generated/api";
import { dateTime, spans } from "./format";
import { Integrations } from "./integrations";
import { PolicyForm } from "./policy-form";
import { type Key, reasonText, stateLabel, useI18n } from "./i18n";

export function Timeline({ history }: { history: HistoryInfo }) {
  const { t, lang } = useI18n();
  const bars = spans(history.intervals, history.since, history.now);
  const share = Math.round(bars.reduce((s, b) => s + b.w, 0) * 1000) / 10;
  return (
    <figure class="timeline">
      <svg
        viewBox="0 0 1000 40"
        preserveAspectRatio="none"
        role="img"
        aria-label={t("connectedShare", { pct: share })}
        data-testid="timeline"
      >
        <rect x="0" y="8" width="1000" height="24" class="tl-bg" />
        {bars.map((b, i) => (
          <rect key={i} x={b.x * 1000} y="8" width={Math.max(b.w * 1000, 1)} height="24" class="tl-on" />
        ))}
      </svg>
      <figcaption>
        <span>{dateTime(history.since, lang)}</span>
        <span>{t("connectedShare", { pct: share })}</span>
        <span>{dateTime(history.now, lang)}</span>
      </figcaption>
    </figure>
  );
}

export function Detail(props: { backend: Backend; card: Card; onBack: () => void }) {
  const { t, lang } = useI18n();
  const [window, setWindow] = useState<HistoryWindow>("24h");
  const [history, setHistory] = useState<HistoryInfo | null>(null);
  const [error, setError] = useState<string | null>(null);
  const { card } = props;
  // Reload when the window changes or the account changes state (a new event exists).
  useEffect(() => {
    let live = true;
    props.backend.history(card.id, window).then(
      (h) => live && (setHistory(h), setError(null)),
      (e) => live && setError(BackendError.from(e).message),
    );
    return () => {
      live = false;
    };
  }, [card.id, window, card.since]);
  return (
    <section class="detail" aria-labelledby="detail-title" data-testid="detail">
      <header class="detail-head">
        <button type="button" onClick={props.onBack}>
          ← {t("back")}
        </button>
        <h2 id="detail-title">{card.name}</h2>
        <StateBadge card={card} />
      </header>
      <p class="reason">{card.reason ? reasonText(card.reason, lang) : ""}</p>
      <div class="segmented" role="radiogroup" aria-label={t("timeline")}>
        {(["24h", "7d"] as HistoryWindow[]).map((w) => (
          <button
            key={w}
            type="button"
            role="radio"
            aria-checked={window === w}
            onClick={() => setWindow(w)}
          >
            {w === "24h" ? t("last24h") : t("last7d")}
          </button>
        ))}
      </div>
      <ErrorText error={error} />
      {history && (
        <>
          <h3>{t("timeline")}</h3>
          <Timeline history={history} />
          {history.lives.length > 0 && <Lives lives={history.lives} />}
          <h3>{t("events")}</h3>
          {history.events.length === 0 ? (
            <p>{t("noEvents")}</p>
          ) : (
            <div class="table-wrap">
              <table data-testid="events">
                <thead>
                  <tr>
                    <th scope="col">{t("at")}</th>
                    <th scope="col">{t("change")}</th>
                    <th scope="col">{t("reason")}</th>
                    <th scope="col">{t("detail")}</th>
                    <th scope="col">{t("by")}</th>
                  </tr>
                </thead>
                <tbody>
                  {history.events.map((e) => (
                    <tr key={e.id}>
                      <td>{dateTime(e.at, lang)}</td>
                      <td>
                        {stateLabel(t, e.from)} → {stateLabel(t, e.to)}
                      </td>
                      <td>{e.reason ? reasonText(e.reason, lang) : ""}</td>
                      <td>{e.detail ?? ""}</td>
                      <td>{t(`by.${e.by}` as Key)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}

/** The account's latest lives (TikTok broadcasts) with their counts. */
function Lives({ lives }: { lives: LiveInfo[] }) {
  const { t, lang } = useI18n();
  const names = lives[0]?.counts.map((c) => c.name).filter((n) => COUNT_KEYS[n]) ?? [];
  return (
    <>
      <h3>{t("lives")}</h3>
      <div class="table-wrap">
        <table data-testid="lives">
          <thead>
            <tr>
              <th scope="col">{t("liveStarted")}</th>
              <th scope="col">{t("liveEnded")}</th>
              {names.map((n) => (
                <th key={n} scope="col">
                  {t(COUNT_KEYS[n])}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {lives.map((l) => (
              <tr key={l.key}>
                <td>{dateTime(l.started_at, lang)}</td>
                <td>
                  {l.ended_at
                    ? `${dateTime(l.ended_at, lang)}${l.end === "ended-while-away" ? ` (${t("endedAway")})` : ""}`
                    : t("liveNow")}
                </td>
                {names.map((n) => (
                  <td key={n}>{l.counts.find((c) => c.name === n)?.value ?? ""}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

/** The counts shown, by the connector's names; others stay in the CSV export. */
const COUNT_KEYS: Record<string, Key> = {
  peak_viewers: "peakViewers",
  avg_viewers: "avgViewers",
  likes: "likes",
  comments: "comments",
  gifts: "gifts",
  follows: "follows",
};

export function Settings(props: {
  backend: Backend;
  /** Version and data folder, for the About section. */
  about: { version: string; data_dir: string } | null;
  prefs: Prefs;
  onPrefs: (p: Prefs | ((old: Prefs) => Prefs)) => void;
  onBack: () => void;
}) {
  const { t } = useI18n();
  const { backend } = props;
  const [secrets, setSecrets] = useState<string[]>([]);
  const [secretName, setSecretName] = useState("");
  const [secretValue, setSecretValue] = useState("");
  const [secretMsg, setSecretMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [prefsError, setPrefsError] = useState<string | null>(null);
  useEffect(() => {
    backend.listSecrets().then(setSecrets, () => setSecrets([]));
    // Whether a tray is shown, fresh from the desktop: a panel may have come or gone since the
    // app started. Only that: a choice saved meanwhile must not be undone by this older read.
    backend.getPrefs().then((fresh) => props.onPrefs((old) => ({ ...old, tray_host: fresh.tray_host })), () => undefined);
  }, []);
  const saveSecret = async (e: Event) => {
    e.preventDefault();
    const name = secretName.trim();
    try {
      await backend.setSecret(name, secretValue);
      // The value leaves the UI's memory as soon as the keyring has it.
      setSecretValue("");
      setSecretName("");
      setSecrets(await backend.listSecrets());
      setSecretMsg({ ok: true, text: t("secretSaved", { name }) });
    } catch (err) {
      setSecretMsg({ ok: false, text: BackendError.from(err).message });
    }
  };
  const removeSecret = async (name: string) => {
    try {
      await backend.deleteSecret(name);
      setSecrets(await backend.listSecrets());
      setSecretMsg(null);
    } catch (err) {
      setSecretMsg({ ok: false, text: BackendError.from(err).message });
    }
  };
  const savePrefs = async (p: Prefs) => {
    try {
      props.onPrefs(await backend.setPrefs(p));
      setPrefsError(null);
    } catch (err) {
      setPrefsError(BackendError.from(err).message);
    }
  };
  const p = props.prefs;
  return (
    <section class="settings" aria-labelledby="settings-title" data-testid="settings">
      <header class="detail-head">
        <button type="button" onClick={props.onBack}>
          ← {t("back")}
        </button>
        <h2 id="settings-title">{t("settings")}</h2>
      </header>
      <div class="settings-grid">
        <section aria-labelledby="s-appearance">
          <h3 id="s-appearance">{t("appearance")}</h3>
          <label>
            {t("language")}
            <select
              name="language"
              value={p.language}
              onChange={(e) => savePrefs({ ...p, language: (e.currentTarget as HTMLSelectElement).value as Language })}
            >
              <option value="en">English</option>
              <option value="id">Bahasa Indonesia</option>
            </select>
          </label>
          <fieldset class="row">
            <legend>{t("theme")}</legend>
            {(["system", "light", "dark"] as Theme[]).map((th) => (
              <label key={th}>
                <input type="radio" name="theme" value={th} checked={p.theme === th} onChange={() => savePrefs({ ...p, theme: th })} />{" "}
                {t(`theme.${th}` as Key)}
              </label>
            ))}
          </fieldset>
          <label class="check">
            <input
              type="checkbox"
              name="start_at_login"
              checked={p.start_at_login}
              onChange={(e) => savePrefs({ ...p, start_at_login: (e.currentTarget as HTMLInputElement).checked })}
            />{" "}
            {t("startAtLogin")}
          </label>
          <label class="check indent">
            <input
              type="checkbox"
              name="start_hidden"
              checked={p.start_hidden}
              disabled={!p.start_at_login}
              onChange={(e) => savePrefs({ ...p, start_hidden: (e.currentTarget as HTMLInputElement).checked })}
            />{" "}
            {t("startHidden")}
          </label>
          <fieldset class="row" data-testid="on-close">
            <legend>{t("onClose")}</legend>
            {([true, false] as const).map((tray) => (
              <label key={String(tray)}>
                <input
                  type="radio"
                  name="close_to_tray"
                  value={tray ? "tray" : "quit"}
                  checked={p.close_to_tray === tray}
                  onChange={() => savePrefs({ ...p, close_to_tray: tray })}
                />{" "}
                {t(tray ? "onCloseTray" : "onCloseQuit")}
              </label>
            ))}
          </fieldset>
          {p.close_to_tray && !p.tray_host && (
            <p class="help" role="note" data-testid="no-tray">
              {t("noTrayHost")}
            </p>
          )}
          <h3>{t("notifications")}</h3>
          <label class="check">
            <input
              type="checkbox"
              name="notifications"
              checked={p.notifications}
              onChange={(e) => savePrefs({ ...p, notifications: (e.currentTarget as HTMLInputElement).checked })}
            />{" "}
            {t("notificationsOn")}
          </label>
          <ErrorText error={prefsError} />
          {props.about && (
            <>
              <h3 id="s-about">{t("about")}</h3>
              <div data-testid="about" aria-labelledby="s-about">
                <p>{t("aboutVersion", { version: props.about.version })}</p>
                <p>{t("aboutData", { dir: props.about.data_dir })}</p>
                <p class="help">{t("aboutKeep")}</p>
              </div>
            </>
          )}
        </section>
        <section aria-labelledby="s-secrets">
          <h3 id="s-secrets">{t("secrets")}</h3>
          <p class="help">{t("secretsHelp")}</p>
          <ul class="secret-list" data-testid="secret-list">
            {secrets.map((s) => (
              <li key={s}>
                <code>{s}</code>
                <button type="button" class="danger small" aria-label={t("deleteSecret", { name: s })} onClick={() => removeSecret(s)}>
                  {t("remove")}
                </button>
              </li>
            ))}
          </ul>
          <form onSubmit={saveSecret} data-testid="secret-form">
            <label>
              {t("secretName")}
              <input name="secret-name" required pattern="[A-Za-z0-9._\-]{1,64}" value={secretName} onInput={(e) => setSecretName((e.currentTarget as HTMLInputElement).value)} />
            </label>
            <label>
              {t("secretValue")}
              <input
                name="secret-value"
                type="password"
                autocomplete="off"
                required
                value={secretValue}
                onInput={(e) => setSecretValue((e.currentTarget as HTMLInputElement).value)}
              />
            </label>
            <button type="submit" class="primary">
              {t("saveSecret")}
            </button>
          </form>
          {secretMsg && (
            <p class={secretMsg.ok ? "ok" : "error"} role={secretMsg.ok ? "status" : "alert"}>
              {secretMsg.text}
            </p>
          )}
        </section>
        <FleetSettings backend={backend} />
        <Integrations
          backend={backend}
          prefs={p}
          secrets={secrets}
          savePrefs={async (next) => props.onPrefs(await backend.setPrefs(next))}
        />
        <section aria-labelledby="s-policy" class="wide">
          <h3 id="s-policy">{t("policy")}</h3>
          <p class="help">{t("policyHelp")}</p>
          <PolicyForm backend={backend} />
        </section>
      </div>
    </section>
  );
}

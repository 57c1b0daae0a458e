// Modal dialogs: the shared frame, remove confirmation, add account, linking (QR / pair code)
// and export. Each is labelled, closes on Escape and returns focus where it came from.

import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { type Backend, BackendError } from "./backend";
import type { Card, ExportWhat, Kind, LinkInfo, LinkRequest } from "./generated/api";
import { useI18n } from "./i18n";

export function Modal(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  testid?: string;
}) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    const first = ref.current?.querySelector<HTMLElement>(
      "input, select, textarea, button:not([data-close])",
    );
    first?.focus();
    return () => before?.focus?.();
  }, []);
  const onKey = (e: KeyboardEvent) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      props.onClose();
    }
  };
  const titleId = `dlg-${props.title.replace(/\W+/g, "-")}`;
  return (
    <div class="overlay" onKeyDown={onKey}>
      <div
        class="modal"
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        ref={ref}
        data-testid={props.testid}
      >
        <header>
          <h2 id={titleId}>{props.title}</h2>
          <CloseButton onClose={props.onClose} />
        </header>
        {props.children}
      </div>
    </div>
  );
}

function CloseButton({ onClose }: { onClose: () => void }) {
  const { t } = useI18n();
  return (
    <button type="button" class="icon" data-close aria-label={t("close")} onClick={onClose}>
      ✕
    </button>
  );
}

export function ErrorText({ error }: { error: string | null }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

export function ConfirmRemove(props: { card: Card; onConfirm: () => void; onCancel: () => void }) {
  const { t } = useI18n();
  return (
    <Modal title={t("remove")} onClose={props.onCancel} testid="confirm-remove">
      <p>{t("confirmRemove", { name: props.card.name })}</p>
      <div class="buttons">
        <button type="button" onClick={props.onCancel}>
          {t("cancel")}
        </button>
        <button type="button" class="danger" onClick={props.onConfirm}>
          {t("remove")}
        </button>
      </div>
    </Modal>
  );
}

const val = (e: Event) => (e.currentTarget as HTMLInputElement).value;

export function AddAccount(props: {
  backend: Backend;
  /** The kind chosen beforehand (the first-run welcome offers WhatsApp). */
  kind?: Kind;
  onClose: () => void;
  onAdded: (card: Card, link: LinkRequest | null) => void;
}) {
  const { t } = useI18n();
  const [kind, setKind] = useState<Kind>(props.kind ?? "websocket");
  const [name, setName] = useState("");
  const [url, setUrl] = useState("");
  const [user, setUser] = useState("");
  const [header, setHeader] = useState("Authorization");
  const [secret, setSecret] = useState("");
  const [priority, setPriority] = useState("100");
  const [country, setCountry] = useState("");
  const [linkBy, setLinkBy] = useState<"qr" | "phone_code">("qr");
  const [phone, setPhone] = useState("");
  const [secrets, setSecrets] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    props.backend.listSecrets().then(setSecrets, () => setSecrets([]));
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    const p = Number(priority);
    if (!Number.isInteger(p)) {
      setError(t("notANumber", { key: t("priority") }));
      return;
    }
    const link: LinkRequest | null =
      kind === "whatsapp" ? (linkBy === "qr" ? { mode: "qr" } : { mode: "phone_code", phone }) : null;
    setBusy(true);
    setError(null);
    try {
      const card = await props.backend.addAccount({
        kind,
        name,
        url: kind === "websocket" ? url : kind === "tiktok" ? user : null,
        header_name: kind === "websocket" && secret ? header : null,
        header_secret: kind === "websocket" && secret ? secret : null,
        priority: p,
        country: country || null,
        link,
      });
      props.onAdded(card, link);
    } catch (err) {
      setError(BackendError.from(err).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal title={t("addAccount")} onClose={props.onClose} testid="add-account">
      <form onSubmit={submit}>
        <fieldset class="row">
          <legend>{t("kind")}</legend>
          {(["websocket", "whatsapp", "tiktok"] as Kind[]).map((k) => (
            <label key={k}>
              <input
                type="radio"
                name="kind"
                value={k}
                checked={kind === k}
                onChange={() => setKind(k)}
              />{" "}
              {t(k)}
            </label>
          ))}
        </fieldset>
        <label>
          {t("name")}
          <input name="name" required maxLength={120} value={name} onInput={(e) => setName(val(e))} />
        </label>
        {kind === "tiktok" ? (
          <label>
            {t("tiktokUser")}
            <input
              name="user"
              required
              placeholder="@tokomawar"
              value={user}
              onInput={(e) => setUser(val(e))}
            />
          </label>
        ) : kind === "websocket" ? (
          <>
            <label>
              {t("url")}
              <input
                name="url"
                type="url"
                required
                placeholder="wss://host/path"
                value={url}
                onInput={(e) => setUrl(val(e))}
              />
            </label>
            <div class="row">
              <label>
                {t("header")}
                <input name="header" value={header} onInput={(e) => setHeader(val(e))} />
              </label>
              <label>
                {t("headerSecret")}
                <select name="secret" value={secret} onChange={(e) => setSecret(val(e))}>
                  <option value="">{t("noSecret")}</option>
                  {secrets.map((s) => (
                    <option key={s} value={s}>
                      {s}
                    </option>
                  ))}
                </select>
              </label>
            </div>
          </>
        ) : (
          <>
            <fieldset class="row">
              <legend>{t("linkBy")}</legend>
              <label>
                <input type="radio" name="linkBy" value="qr" checked={linkBy === "qr"} onChange={() => setLinkBy("qr")} />{" "}
                {t("linkQr")}
              </label>
              <label>
                <input
                  type="radio"
                  name="linkBy"
                  value="phone_code"
                  checked={linkBy === "phone_code"}
                  onChange={() => setLinkBy("phone_code")}
                />{" "}
                {t("linkPhone")}
              </label>
            </fieldset>
            {linkBy === "phone_code" && (
              <label>
                {t("phone")}
                <input name="phone" type="tel" required value={phone} onInput={(e) => setPhone(val(e))} />
              </label>
            )}
          </>
        )}
        <div class="row">
          <label>
            {t("priority")}
            <input
              name="priority"
              type="number"
              min={0}
              max={1000}
              value={priority}
              onInput={(e) => setPriority(val(e))}
            />
          </label>
          <label>
            {t("country")}
            <input name="country" maxLength={2} value={country} onInput={(e) => setCountry(val(e))} />
          </label>
        </div>
        <ErrorText error={error} />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>
            {t("cancel")}
          </button>
          <button type="submit" class="primary" disabled={busy}>
            {t("add")}
          </button>
        </div>
      </form>
    </Modal>
  );
}

/** Seconds left until `expiresAt`, never negative. */
export function secondsLeft(expiresAt: string, now: number): number {
  return Math.max(0, Math.ceil((Date.parse(expiresAt) - now) / 1000));
}

export function LinkModal(props: {
  backend: Backend;
  card: Card;
  request: LinkRequest;
  /** The latest code for this account (collected by the app from the moment it starts). */
  code: LinkInfo | null;
  onClose: () => void;
}) {
  const { t } = useI18n();
  const { code } = props;
  const [now, setNow] = useState(Date.now());
  const [error, setError] = useState<string | null>(null);
  const refreshed = useRef(false);
  useEffect(() => {
    refreshed.current = false;
    setNow(Date.now());
  }, [code]);
  // The countdown ticks only while a code is shown.
  useEffect(() => {
    if (!code) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [code]);
  const refresh = () => {
    setError(null);
    props.backend.relink(props.card.id, props.request).catch((e) => setError(BackendError.from(e).message));
  };
  const left = code ? secondsLeft(code.expires_at, now) : null;
  // WhatsApp rotates codes by itself; if none came in time, ask once for a fresh one.
  useEffect(() => {
    if (left === 0 && !refreshed.current) {
      refreshed.current = true;
      refresh();
    }
  }, [left]);
  const linked = props.card.state === "connected";
  return (
    <Modal title={t("linkTitle", { name: props.card.name })} onClose={props.onClose} testid="link-modal">
      {linked ? (
        <p role="status">{t("linked", { name: props.card.name })}</p>
      ) : !code ? (
        <p role="status">{t("waitingCode")}</p>
      ) : (
        <>
          {code.mode === "qr" && code.qr_svg ? (
            <div
              class="qr"
              role="img"
              aria-label={t("linkQr")}
              // An SVG drawn by the shell from the QR payload; it contains no script.
              dangerouslySetInnerHTML={{ __html: code.qr_svg }}
            />
          ) : (
            <p class="pair-code" aria-label={t("linkPhone")}>
              {code.code?.slice(0, 4)}-{code.code?.slice(4)}
            </p>
          )}
          <p>{code.mode === "qr" ? t("scanHelp") : t("pairHelp")}</p>
          <p role="timer" aria-live="off" data-testid="countdown">
            {left === 0 ? t("expired") : t("expiresIn", { s: left ?? 0 })}
          </p>
        </>
      )}
      <ErrorText error={error} />
      <div class="buttons">
        <button type="button" onClick={refresh} disabled={linked}>
          {t("refresh")}
        </button>
        <button type="button" class="primary" onClick={props.onClose}>
          {t("close")}
        </button>
      </div>
    </Modal>
  );
}

export function ExportDialog(props: { backend: Backend; cards: Card[]; onClose: () => void }) {
  const { t } = useI18n();
  const [what, setWhat] = useState<ExportWhat>("sessions");
  const [account, setAccount] = useState("");
  const [since, setSince] = useState("");
  const [until, setUntil] = useState("");
  const [rows, setRows] = useState<number | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => props.backend.onExportProgress((p) => setRows(p.rows)), []);
  const run = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    try {
      const path = await props.backend.chooseExportPath(what);
      setRows(0);
      const r = await props.backend.exportCsv({
        path,
        what,
        account: account ? Number(account) : null,
        since: since || null,
        until: until || null,
      });
      setDone(t("exported", { rows: r.rows, path: r.path }));
    } catch (err) {
      const b = BackendError.from(err);
      if (b.code !== "cancelled") setError(b.message);
    } finally {
      setRows(null);
    }
  };
  return (
    <Modal title={t("exportTitle")} onClose={props.onClose} testid="export">
      <form onSubmit={run}>
        <fieldset class="row">
          <legend>{t("what")}</legend>
          <label>
            <input type="radio" name="what" checked={what === "sessions"} onChange={() => setWhat("sessions")} />{" "}
            {t("sessions")}
          </label>
          <label>
            <input type="radio" name="what" checked={what === "events"} onChange={() => setWhat("events")} />{" "}
            {t("eventsWhat")}
          </label>
          <label>
            <input type="radio" name="what" checked={what === "lives"} onChange={() => setWhat("lives")} />{" "}
            {t("livesWhat")}
          </label>
        </fieldset>
        <label>
          {t("account")}
          <select name="account" value={account} onChange={(e) => setAccount(val(e))}>
            <option value="">{t("allAccounts")}</option>
            {props.cards.map((c) => (
              <option key={c.id} value={String(c.id)}>
                {c.name}
              </option>
            ))}
          </select>
        </label>
        <div class="row">
          <label>
            {t("since")}
            <input name="since" type="date" value={since} onInput={(e) => setSince(val(e))} />
          </label>
          <label>
            {t("until")}
            <input name="until" type="date" value={until} onInput={(e) => setUntil(val(e))} />
          </label>
        </div>
        {rows !== null && (
          <p role="status">
            <progress aria-label={t("exporting", { rows })} /> {t("exporting", { rows })}
          </p>
        )}
        {done && <p role="status">{done}</p>}
        <ErrorText error={error} />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>
            {t("close")}
          </button>
          <button type="submit" class="primary" disabled={rows !== null}>
            {t("chooseAndExport")}
          </button>
        </div>
      </form>
    </Modal>
  );
}

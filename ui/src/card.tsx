// One account card, and the virtualised grid that shows thousands of them with a light DOM:
// only the rows in (or near) the viewport exist; the rest is one tall spacer.

import { Component } from "preact";
import { useContext, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

import { ConsoleMode, Owner } from "./console";

import type { Card } from "./generated/api";
import { ago, clock, dateTime, pct, phoneNumber } from "./format";
import { type Key, type T, reasonText, stateLabel, useI18n } from "./i18n";
import type { Language } from "./generated/api";

/** Which phone it is, once linked: the number and the profile name. */
export function whatsAppTarget(card: Card): string {
  if (!card.remote_id) return "WhatsApp";
  const number = phoneNumber(card.remote_id);
  return card.remote_name ? `${number} · ${card.remote_name}` : number;
}

/** A WhatsApp number that is back only after a new QR scan. */
const SCAN_FIXES = ["logged-out", "replaced", "qr-expired", "pairing-failed"];
const needsScan = (card: Card) =>
  card.state === "needs_operator" && card.kind === "whatsapp" && SCAN_FIXES.includes(card.reason?.code ?? "");

/** The one thing that fixes an account waiting for a person, in the operator's words. */
export function fixText(card: Card, t: T, lang: Language): string {
  if (SCAN_FIXES.includes(card.reason?.code ?? "")) return t("fixRelink");
  switch (card.reason?.code) {
    case "banned":
      return card.reason.until ? t("fixBannedUntil", { date: dateTime(card.reason.until, lang) }) : t("fixBanned");
    case "credentials-missing":
      return t("fixSecret");
    case "outdated":
      return t("fixOutdated");
    default:
      return t("fixStart");
  }
}

export type CardAction =
  | "start"
  | "stop"
  | "retry"
  | "resetBreaker"
  | "relink"
  | "mute"
  | "unmute"
  | "notifyLive"
  | "quietLive"
  | "remove"
  | "details";

/** A symbol per state so the badge never relies on colour alone. */
const SYMBOL: Record<Card["state"], string> = {
  connected: "●",
  waiting: "○",
  connecting: "◔",
  backoff: "↻",
  paused: "❚❚",
  linking: "⌁",
  needs_operator: "!",
  stopped: "■",
};

export function StateBadge({ card }: { card: Card }) {
  const { t } = useI18n();
  return (
    <span class={`badge state-${card.state}`} data-state={card.state}>
      <span aria-hidden="true">{SYMBOL[card.state]}</span>{" "}
      {card.kind === "tiktok" && card.state === "waiting"
        ? t("waitingForLive")
        : card.kind === "tiktok" && card.state === "connected"
          ? t("inLive")
          : stateLabel(t, card.state)}
    </span>
  );
}

type CardProps = { card: Card; now: number; onAction: (a: CardAction, c: Card) => void };

function CardView({ card, now, onAction }: CardProps) {
  const { t, lang } = useI18n();
  const inConsole = useContext(ConsoleMode);
  const label = (action: Key) => t("actionsFor", { action: t(action), name: card.name });
  const button = (action: CardAction, key: Key, cls = "") => (
    <button type="button" class={cls} data-action={action} aria-label={label(key)} onClick={() => onAction(action, card)}>
      {t(key)}
    </button>
  );
  // Marked while it keeps connecting and dropping; the mark lapses on its own once it holds.
  const unstable = card.unstable_until !== null && Date.parse(card.unstable_until) > now;
  const extra =
    card.state === "backoff" && card.retry_at
      ? ` · ${t("retryAt", { time: clock(card.retry_at, lang) })}`
      : card.state === "paused" && card.paused_until
        ? ` · ${t("pausedUntil", { time: clock(card.paused_until, lang) })}`
        : "";
  return (
    <article
      class={`card state-${card.state}`}
      data-testid="card"
      data-id={card.id}
      data-state={card.state}
      aria-labelledby={`card-name-${card.id}`}
    >
      <header>
        <h3 id={`card-name-${card.id}`} title={card.name}>
          {card.name}
        </h3>
        <StateBadge card={card} />
        {unstable && (
          <span class="badge unstable" data-testid="unstable" title={t("unstableHelp")}>
            <span aria-hidden="true">⚡</span> {t("unstable")}
          </span>
        )}
      </header>
      <p class="target" title={card.target}>
        {card.kind === "whatsapp" ? whatsAppTarget(card) : card.target}
        {card.country ? ` · ${card.country}` : ""}
        {card.muted ? ` · ${t("muted")}` : ""}
      </p>
      {inConsole && <Owner card={card} />}
      <p class="reason" data-testid="reason">
        {card.reason ? reasonText(card.reason, lang) : "\u00a0"}
        {extra}
      </p>
      {card.state === "needs_operator" && card.reason && (
        <p class="fix" data-testid="fix">
          {fixText(card, t, lang)}
        </p>
      )}
      <dl class="stats">
        <div title={t("uptimeHelp")}>
          <dt>{t("uptime")}</dt>
          <dd>{pct(card.uptime_pct)}</dd>
        </div>
        <div title={t("scoreHelp")} data-testid="score">
          <dt>{t("score")}</dt>
          <dd>{card.score ?? "—"}</dd>
        </div>
        <div>
          <dt>{t("lastChange")}</dt>
          <dd title={card.since}>{ago(card.since, now, lang)}</dd>
        </div>
        <div>
          <dt>{t("reconnects")}</dt>
          <dd>{card.reconnects}</dd>
        </div>
        <div>
          <dt>{t("breaker")}</dt>
          <dd data-breaker={card.breaker}>{t(`breaker.${card.breaker}` as Key)}</dd>
        </div>
      </dl>
      <div class="actions" role="group" aria-label={card.name}>
        {/* Held stopped (autorecover off) is still desired: it needs Start, not Stop. */}
        {card.desired && card.state !== "stopped" ? button("stop", "stop") : button("start", "start", "primary")}
        {button("retry", "retry")}
        {card.breaker !== "closed" && button("resetBreaker", "resetBreaker")}
        {card.kind === "whatsapp" && button("relink", "relink", needsScan(card) ? "primary" : "")}
        {card.muted ? button("unmute", "unmute") : button("mute", "mute")}
        {card.kind === "tiktok" &&
          (card.notify_live ? button("quietLive", "quietLive") : button("notifyLive", "notifyLive"))}
        {button("details", "details")}
        {button("remove", "remove", "danger")}
      </div>
    </article>
  );
}

/**
 * A card re-renders only when its account changed (a delta brings a new object) or the clock
 * for "last change" moved; `onAction` is read at click time, so a new closure does not count.
 */
export class AccountCard extends Component<CardProps> {
  shouldComponentUpdate(next: CardProps) {
    return next.card !== this.props.card || next.now !== this.props.now;
  }
  render() {
    return <CardView {...this.props} onAction={(a, c) => this.props.onAction(a, c)} />;
  }
}

export const CARD_HEIGHT = 196;
export const CARD_MIN_WIDTH = 300;
const GAP = 12;
const OVERSCAN_ROWS = 2;

/** Columns that fit `width`. */
export function columnsFor(width: number): number {
  return Math.max(1, Math.floor((width + GAP) / (CARD_MIN_WIDTH + GAP)));
}

/** The rows to render for a scroll position: [first, last). */
export function visibleRows(
  scrollTop: number,
  viewport: number,
  rows: number,
): [number, number] {
  const row = CARD_HEIGHT + GAP;
  const first = Math.max(0, Math.floor(scrollTop / row) - OVERSCAN_ROWS);
  const last = Math.min(rows, Math.ceil((scrollTop + viewport) / row) + OVERSCAN_ROWS);
  return [first, last];
}

type GridProps = {
  cards: Card[];
  now: number;
  onAction: (a: CardAction, c: Card) => void;
};

export function CardGrid({ cards, now, onAction }: GridProps) {
  const ref = useRef<HTMLDivElement>(null);
  // jsdom and the first paint have no layout yet: assume a typical window.
  const [box, setBox] = useState({ width: 1200, height: 800, top: 0 });
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () =>
      setBox((b) => ({
        width: el.clientWidth || b.width,
        height: el.clientHeight || b.height,
        top: el.scrollTop,
      }));
    measure();
    if (typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    let frame = 0;
    const onScroll = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setBox((b) => ({ ...b, top: el.scrollTop }));
      });
    };
    el.addEventListener("scroll", onScroll, { passive: true });
    return () => {
      el.removeEventListener("scroll", onScroll);
      if (frame) cancelAnimationFrame(frame);
    };
  }, []);
  const cols = columnsFor(box.width);
  const rows = Math.ceil(cards.length / cols);
  const [first, last] = visibleRows(box.top, box.height, rows);
  const shown = cards.slice(first * cols, last * cols);
  const rowHeight = CARD_HEIGHT + GAP;
  return (
    <div class="grid-scroll" ref={ref} data-testid="grid">
      <div class="grid-spacer" style={{ height: `${rows * rowHeight}px` }}>
        <div
          class="grid"
          role="list"
          style={{
            transform: `translateY(${first * rowHeight}px)`,
            gridTemplateColumns: `repeat(${cols}, minmax(0, 1fr))`,
          }}
        >
          {/* Only the cards on screen exist: each says where it stands in the whole list. */}
          {shown.map((c, i) => (
            <div role="listitem" key={c.id} aria-setsize={cards.length} aria-posinset={first * cols + i + 1}>
              <AccountCard card={c} now={now} onAction={onAction} />
            </div>
          ))}
        </div>
      </div>
    </div>
  );
}

// The fleet as the UI holds it: cards by id, kept current by the fleet deltas the shell streams. Changed
// cards are new objects and unchanged ones keep their identity, so memoised cards re-render only
// when their own account changed. Subscribers are told once per applied delta.
//
// The snapshot and the deltas travel apart, so they can cross: every one carries `seq`, the order
// in which the shell read the fleet. Deltas that arrive before the snapshot wait for it; those
// read before it are already in it and are dropped, the rest are applied on top.

import type { Card, FleetDelta, StateName } from "./generated/api";

export const STATES: StateName[] = [
  "connected",
  "waiting",
  "connecting",
  "backoff",
  "paused",
  "linking",
  "needs_operator",
  "stopped",
];

export type Counts = Record<StateName, number> & { total: number };

export class Fleet {
  private byId = new Map<number, Card>();
  private ordered: Card[] = [];
  private dirty = false;
  private listeners = new Set<() => void>();
  /** The snapshot's `seq`; null until one arrived (deltas wait in `early` meanwhile). */
  private seq: number | null = null;
  private early: FleetDelta[] = [];
  version = 0;

  /** Without cards: empty until the snapshot comes (`reset`). With cards: that snapshot. */
  constructor(cards?: Card[]) {
    if (cards) this.reset(cards, 0);
  }

  /** The snapshot, then whatever newer deltas came before it. */
  reset(cards: Card[], seq: number) {
    this.byId = new Map(cards.map((c) => [c.id, c]));
    this.seq = seq;
    const early = this.early.filter((d) => d.seq > seq);
    this.early = [];
    for (const d of early) this.change(d.cards, d.removed);
    this.dirty = true;
    this.bump();
  }

  /** A delta from the shell: held until the snapshot, dropped if the snapshot is newer. */
  apply(delta: FleetDelta) {
    if (this.seq === null) {
      this.early.push(delta);
      return;
    }
    if (delta.seq <= this.seq) return;
    this.update(delta.cards, delta.removed);
  }

  /** A change this window made itself (an account added or removed here). */
  update(cards: Card[], removed: number[]) {
    if (cards.length === 0 && removed.length === 0) return;
    this.change(cards, removed);
    this.dirty = true;
    this.bump();
  }

  private change(cards: Card[], removed: number[]) {
    for (const id of removed) this.byId.delete(id);
    for (const c of cards) this.byId.set(c.id, c);
  }

  get(id: number): Card | undefined {
    return this.byId.get(id);
  }

  /** Highest priority first, then oldest (the restore order). */
  cards(): Card[] {
    if (this.dirty) {
      this.ordered = [...this.byId.values()].sort(
        (a, b) => b.priority - a.priority || a.id - b.id,
      );
      this.dirty = false;
    }
    return this.ordered;
  }

  counts(): Counts {
    const c = { total: 0 } as Counts;
    for (const s of STATES) c[s] = 0;
    for (const card of this.byId.values()) {
      c[card.state] += 1;
      c.total += 1;
    }
    return c;
  }

  subscribe(f: () => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  private bump() {
    this.version += 1;
    this.listeners.forEach((f) => f());
  }
}

/** Cards matching a name/target search and an optional state. */
/** Name, endpoint, profile name, or the number however it is typed (+62 812…, 0812…, 62812…). */
function matches(c: Card, q: string): boolean {
  if (c.name.toLowerCase().includes(q) || c.target.toLowerCase().includes(q)) return true;
  if (c.remote_name?.toLowerCase().includes(q)) return true;
  const digits = q.replace(/\D/g, "");
  if (!c.remote_id || digits.length < 3 || /[^\d\s+()-]/.test(q)) return false;
  const number = c.remote_id.replace(/\D/g, "");
  // A national number typed with its leading 0: match it without the 0.
  return number.includes(digits) || (digits.startsWith("0") && number.includes(digits.slice(1)));
}

export function filterCards(cards: Card[], query: string, state: StateName | null): Card[] {
  const q = query.trim().toLowerCase();
  if (!q && !state) return cards;
  return cards.filter(
    (c) =>
      (!state || c.state === state) &&
      (!q || matches(c, q)),
  );
}

/** Longest delay setTimeout takes; a later deadline re-arms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Group<T> {
  items: Set<T>;
  timer: NodeJS.Timeout;
}

/**
 * Deadlines of many items on one Node timer per distinct instant: items due at the same millisecond
 * share a timer. Token expiries are whole seconds (a JWT's `exp`), so every session whose token was
 * issued in the same second waits on one timer instead of a Timeout, a closure and its context each.
 * `onDue` runs for every item of an instant when it comes (not before), unless it was deleted.
 */
export class SharedDeadlines<T> {
  private readonly groups = new Map<number, Group<T>>();

  constructor(private readonly onDue: (item: T) => void) {}

  /** Timers armed now (one per distinct pending instant). */
  get timerCount(): number {
    return this.groups.size;
  }

  add(atMs: number, item: T): void {
    const group = this.groups.get(atMs);
    if (group !== undefined) group.items.add(item);
    else this.groups.set(atMs, { items: new Set([item]), timer: this.arm(atMs) });
  }

  delete(atMs: number, item: T): void {
    const group = this.groups.get(atMs);
    if (group === undefined || !group.items.delete(item) || group.items.size > 0) return;
    clearTimeout(group.timer);
    this.groups.delete(atMs);
  }

  private arm(atMs: number): NodeJS.Timeout {
    return setTimeout(() => this.fire(atMs), Math.min(Math.max(atMs - Date.now(), 0), MAX_TIMER_MS));
  }

  private fire(atMs: number): void {
    const group = this.groups.get(atMs);
    if (group === undefined) return;
    if (Date.now() < atMs) {
      group.timer = this.arm(atMs);
      return;
    }
    this.groups.delete(atMs);
    for (const item of group.items) this.onDue(item);
  }
}

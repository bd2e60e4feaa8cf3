import type { Interest } from './interest.js';

interface Waiter {
  resolve: () => void;
  /** Refuses the waiter: it waited beyond its deadline, or nobody wants its result any more. */
  refuse: (reason: LimiterRefusal) => void;
  deadlineMs: number;
  interest: Interest | undefined;
}

/** `full`: the queue is full; `waited`: past its deadline; `abandoned`: everyone who wanted it has gone. */
export type LimiterRefusal = 'full' | 'waited' | 'abandoned';

/**
 * At most `concurrency` tasks at once; the rest wait in a bounded FIFO queue, each at most `maxWaitMs`
 * (checked when a slot frees up: a call never waits longer than that plus one task's duration). A
 * waiting task whose Interest is no longer active (the connections that asked for it have closed) is
 * refused when its turn comes instead of run: a burst of viewers who gave up costs no Directus calls.
 */
export class ConcurrencyLimiter {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    readonly concurrency: number,
    private readonly maxQueued: number,
    private readonly maxWaitMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Tasks running now. */
  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Runs `task` when a slot is free; rejects with `refuse(reason)` when the queue is full, the wait too
   * long, or `interest` no longer active when the slot comes.
   */
  async run<T>(task: () => Promise<T>, refuse: (reason: LimiterRefusal) => Error, interest?: Interest): Promise<T> {
    if (interest !== undefined && !interest.active) throw refuse('abandoned');
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxQueued) throw refuse('full');
      await new Promise<void>((resolve, reject) =>
        this.waiting.push({
          resolve,
          refuse: (reason) => reject(refuse(reason)),
          deadlineMs: this.now() + this.maxWaitMs,
          interest,
        }),
      );
      // The slot was handed over by release(): `running` already counts it.
    } else {
      this.running++;
    }
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  /** Hands the slot to the next waiter still within its deadline and wanted (refusing the others), or frees it. */
  private release(): void {
    const now = this.now();
    for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) {
      if (next.deadlineMs < now) next.refuse('waited');
      else if (next.interest !== undefined && !next.interest.active) next.refuse('abandoned');
      else {
        next.resolve();
        return;
      }
    }
    this.running--;
  }
}

interface Waiter {
  resolve: () => void;
  /** Refuses the waiter: it waited beyond its deadline. */
  expire: () => void;
  deadlineMs: number;
}

export type LimiterRefusal = 'full' | 'waited';

/**
 * At most `concurrency` tasks at once; the rest wait in a bounded FIFO queue, each at most `maxWaitMs`
 * (checked when a slot frees up: a call never waits longer than that plus one task's duration).
 */
export class ConcurrencyLimiter {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    private readonly concurrency: number,
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

  /** Runs `task` when a slot is free; rejects with `refuse(reason)` when the queue is full or the wait too long. */
  async run<T>(task: () => Promise<T>, refuse: (reason: LimiterRefusal) => Error): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxQueued) throw refuse('full');
      await new Promise<void>((resolve, reject) =>
        this.waiting.push({ resolve, expire: () => reject(refuse('waited')), deadlineMs: this.now() + this.maxWaitMs }),
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

  /** Hands the slot to the next waiter still within its deadline (refusing the expired ones), or frees it. */
  private release(): void {
    const now = this.now();
    for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) {
      if (next.deadlineMs >= now) {
        next.resolve();
        return;
      }
      next.expire();
    }
    this.running--;
  }
}

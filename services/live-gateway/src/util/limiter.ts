/** At most `concurrency` tasks at once; the rest wait in a bounded FIFO queue. */
export class ConcurrencyLimiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly concurrency: number,
    private readonly maxQueued = 100_000,
  ) {}

  /** Runs `task` when a slot is free; rejects at once with `whenFull()` when the queue is full. */
  async run<T>(task: () => Promise<T>, whenFull: () => Error): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxQueued) throw whenFull();
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await task();
    } finally {
      // Hand the slot straight to the next waiter, or free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

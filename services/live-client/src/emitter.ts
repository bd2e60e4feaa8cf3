export type Listener<T> = (value: T) => void;

/** A minimal typed event emitter (no dependency; a listener that throws does not stop the others). */
export class Emitter<Events> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  on<K extends keyof Events>(name: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(name);
    if (set === undefined) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  emit<K extends keyof Events>(name: K, value: Events[K]): void {
    const set = this.listeners.get(name);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (err) {
        // A bug in the application's listener must not break the connection's bookkeeping.
        queueMicrotaskSafe(() => {
          throw err;
        });
      }
    }
  }
}

/** Rethrows outside the emit loop, where the runtime reports uncaught errors. */
function queueMicrotaskSafe(callback: () => void): void {
  (globalThis as unknown as { queueMicrotask(callback: () => void): void }).queueMicrotask(callback);
}

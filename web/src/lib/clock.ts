// One clock for every countdown and for expiring messages from the store: a single interval
// that runs only while something listens, instead of a timer per message.

export class Clock {
  private listeners = new Set<() => void>();
  private interval: ReturnType<typeof setInterval> | undefined;
  private current: number;

  constructor(private readonly tickMs = 1000, private readonly now: () => number = Date.now) {
    this.current = now();
  }

  /** The time of the last tick (ms since the epoch, this device's clock). */
  getNow = (): number => this.current;

  /** Called on every tick; the clock runs while it has at least one listener. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    if (!this.interval) {
      this.current = this.now();
      this.interval = setInterval(this.tick, this.tickMs);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearInterval(this.interval);
        this.interval = undefined;
      }
    };
  };

  private tick = (): void => {
    this.current = this.now();
    this.listeners.forEach((listener) => listener());
  };
}

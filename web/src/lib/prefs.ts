// The person's choices about being told of new messages, kept on this device. Off until chosen:
// this is a private chat, so message text in a notification is a choice of its own.

export interface Preferences {
  notify: boolean;    // a notification per new message while the tab is hidden
  showText: boolean;  // ...with the message's text in it
  sound: boolean;     // a short tone per new message while the tab is hidden
}

export const defaults: Preferences = { notify: false, showText: false, sound: false };

const KEY = "secure-link:prefs";

/** What the class needs of localStorage; tests give it a Map. */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export class Prefs {
  private listeners = new Set<() => void>();
  private current: Preferences;

  constructor(private readonly storage: StorageLike) {
    this.current = Prefs.read(storage);
  }

  private static read(storage: StorageLike): Preferences {
    try {
      const saved = JSON.parse(storage.getItem(KEY) ?? "{}") as Partial<Preferences>;
      return {
        notify: saved.notify === true, showText: saved.showText === true, sound: saved.sound === true,
      };
    } catch {
      return defaults;
    }
  }

  get = (): Preferences => this.current;

  set = (change: Partial<Preferences>): void => {
    this.current = { ...this.current, ...change };
    try {
      this.storage.setItem(KEY, JSON.stringify(this.current));
    } catch {
      // storage full or refused: the choice holds until the page is closed
    }
    this.listeners.forEach((listener) => listener());
  };

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
}

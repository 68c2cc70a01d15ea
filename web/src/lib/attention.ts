// Telling the person of new messages when they are not looking: the unread count in the tab's
// title, and, while the tab is hidden, a notification per message naming its sender (the text
// only if they chose so) and an optional tone. Plain TypeScript: the browser's parts come in
// as small adapters, so the tests give it fakes.
import type { Message } from "./api";
import type { Prefs } from "./prefs";
import { unreadTotal, type State, type Store } from "./store";

export const TITLE = "Secure Link";

export type Permission = NotificationPermission | "unsupported";

export interface Notifier {
  permission(): Permission;
  request(): Promise<Permission>;
  show(title: string, body: string, tag: string, onClick: () => void): void;
}

export interface Page {
  setTitle(title: string): void;
  hidden(): boolean;
  onVisibility(listener: () => void): () => void;
}

export function titleFor(unread: number): string {
  return unread > 0 ? `(${unread}) ${TITLE}` : TITLE;
}

/** A notification's words: who, and what only if the person chose to see it there. */
export function notificationBody(message: Message, showText: boolean): string {
  if (!showText) return message.attachment ? "New attachment" : "New message";
  return message.message || (message.attachment ? `Attachment: ${message.attachment.name}` : "New message");
}

export class Attention {
  constructor(private readonly store: Store, private readonly prefs: Prefs, private readonly notifier: Notifier,
              private readonly page: Page, private readonly tone: () => void,
              private readonly openChat: (peer: string) => void) {}

  /** Keep the title's count and the store's idea of visibility current; returns the stop. */
  start(): () => void {
    let conversations: State["conversations"] | null = null;
    const retitle = () => {
      const state = this.store.getState();
      if (state.conversations === conversations) return;
      conversations = state.conversations;
      this.page.setTitle(titleFor(unreadTotal(state)));
    };
    const visibility = () => this.store.dispatch({ type: "visible", visible: !this.page.hidden() });
    visibility();
    retitle();
    const unsubscribe = this.store.subscribe(retitle);
    const stopWatching = this.page.onVisibility(visibility);
    return () => {
      unsubscribe();
      stopWatching();
      this.page.setTitle(TITLE);
    };
  }

  /** A new message from someone else has arrived: tell the person if they are not looking. */
  incoming(message: Message): void {
    if (!this.page.hidden()) return;
    const prefs = this.prefs.get();
    if (prefs.notify && this.notifier.permission() === "granted") {
      const sender = this.store.getState().people[message.from];
      const name = sender?.display_name && sender.display_name !== message.from
        ? `${sender.display_name} (${message.from})` : message.from;
      this.notifier.show(name, notificationBody(message, prefs.showText), `secure-link:${message.from}`,
                         () => this.openChat(message.from));
    }
    if (prefs.sound) this.tone();
  }
}

/** The browser's Notification API, if it has one. */
export function browserNotifier(): Notifier {
  const supported = typeof window !== "undefined" && "Notification" in window;
  return {
    permission: () => (supported ? Notification.permission : "unsupported"),
    request: async () => (supported ? Notification.requestPermission() : "unsupported"),
    show: (title, body, tag, onClick) => {
      if (!supported) return;
      const notification = new Notification(title, { body, tag });
      notification.onclick = () => {
        window.focus();
        onClick();
        notification.close();
      };
    },
  };
}

export function browserPage(): Page {
  return {
    setTitle: (title) => { if (document.title !== title) document.title = title; },
    hidden: () => document.visibilityState === "hidden",
    onVisibility: (listener) => {
      document.addEventListener("visibilitychange", listener);
      return () => document.removeEventListener("visibilitychange", listener);
    },
  };
}

/** A short two-note tone from Web Audio (no sound file to fetch). Browsers let a page start audio
 *  only after the person has interacted with it, so the context is made or resumed on their next
 *  key or click; until then the tone is silent. */
export function webAudioTone(): { play: () => void; unlock: () => void } {
  let context: AudioContext | null = null;
  const unlock = () => {
    if (typeof AudioContext === "undefined") return;
    context ??= new AudioContext();
    if (context.state === "suspended") void context.resume();
  };
  const play = () => {
    if (!context || context.state !== "running") return;
    const start = context.currentTime;
    [880, 1320].forEach((frequency, index) => {
      const oscillator = context!.createOscillator();
      const gain = context!.createGain();
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + index * 0.12);
      gain.gain.exponentialRampToValueAtTime(0.15, start + index * 0.12 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + index * 0.12 + 0.2);
      oscillator.connect(gain).connect(context!.destination);
      oscillator.start(start + index * 0.12);
      oscillator.stop(start + index * 0.12 + 0.22);
    });
  };
  return { play, unlock };
}

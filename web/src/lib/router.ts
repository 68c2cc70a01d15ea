// One address per screen, so reload, Back and bookmarks work: `/` the conversations,
// `/chat/<username>` a conversation, `/account` the account. The server answers index.html
// for any such path a browser opens (docs/api.md, "The web client").

export type Route = { screen: "list" } | { screen: "chat"; peer: string } | { screen: "account" };

const CHAT = /^\/chat\/([^/]+)\/?$/;

export function parseRoute(path: string): Route {
  const chat = CHAT.exec(path);
  if (chat) {
    try {
      const peer = decodeURIComponent(chat[1]).trim().toLowerCase();
      if (peer) return { screen: "chat", peer };
    } catch {
      // a malformed escape: no such conversation
    }
  }
  if (path === "/account" || path === "/account/") return { screen: "account" };
  return { screen: "list" };
}

export function routePath(route: Route): string {
  switch (route.screen) {
    case "chat": return `/chat/${encodeURIComponent(route.peer)}`;
    case "account": return "/account";
    case "list": return "/";
  }
}

export function sameRoute(a: Route, b: Route): boolean {
  return routePath(a) === routePath(b);
}

/** What the app needs of the browser's history: the tests of this module give it a fake. */
export interface HistoryLike {
  readonly state: unknown;
  pushState(data: unknown, unused: string, url: string): void;
  replaceState(data: unknown, unused: string, url?: string): void;
  back(): void;
}

interface Entry { app: "secure-link"; depth: number }

function depthOf(state: unknown): number {
  const entry = state as Partial<Entry> | null;
  return entry?.app === "secure-link" && typeof entry.depth === "number" ? entry.depth : 0;
}

/** Moves between screens through the history, so the browser's Back undoes each move; React
 *  reads the current route with useSyncExternalStore. */
export class Router {
  private listeners = new Set<() => void>();
  private route: Route;

  constructor(private readonly history: HistoryLike, private readonly path: () => string = () => location.pathname) {
    this.route = parseRoute(path());
    // marks the entry the app was opened at as its own, keeping its address (and any query) as it is
    if (depthOf(history.state) === 0) history.replaceState({ app: "secure-link", depth: 0 }, "");
  }

  current = (): Route => this.route;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  go = (route: Route, replace = false): void => {
    const depth = depthOf(this.history.state);
    if (replace) this.history.replaceState({ app: "secure-link", depth }, "", routePath(route));
    else if (!sameRoute(route, this.route)) this.history.pushState({ app: "secure-link", depth: depth + 1 }, "", routePath(route));
    this.changed(route);
  };

  /** The app's own back arrow: the browser's Back when that stays in the app, else the list in place. */
  back = (): void => {
    if (depthOf(this.history.state) > 0) this.history.back();
    else this.go({ screen: "list" }, true);
  };

  /** The browser moved through the history (Back, Forward): call from `popstate`. */
  popped = (): void => this.changed(parseRoute(this.path()));

  private changed(route: Route): void {
    if (sameRoute(route, this.route)) return;
    this.route = route;
    this.listeners.forEach((listener) => listener());
  }
}

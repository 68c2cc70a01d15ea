// Components read the store through selectors: each renders again only when what it selected
// changed, not on every frame (a message to Bob must not re-render Carol's list row, nor the
// composer; a key typed must not re-render the message list).
import { createContext, useContext, useRef, useSyncExternalStore } from "react";
import type { State, Store } from "./store";

export const StoreContext = createContext<Store | null>(null);

export function useStoreInstance(): Store {
  const store = useContext(StoreContext);
  if (!store) throw new Error("useSelector needs a StoreContext provider");
  return store;
}

/** Shallow equality for selectors that build a small object or array of stable parts. */
export function shallowEqual<T>(a: T, b: T): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  const keysA = Object.keys(a) as (keyof T)[];
  const keysB = Object.keys(b) as (keyof T)[];
  return keysA.length === keysB.length && keysA.every((key) => Object.is(a[key], b[key]));
}

/** The selected part of the state; the same value (by `equal`) keeps the component as it is. */
export function useSelector<T>(select: (state: State) => T, equal: (a: T, b: T) => boolean = Object.is): T {
  const store = useStoreInstance();
  const cache = useRef<{ state: State; select: (state: State) => T; value: T } | null>(null);
  const snapshot = () => {
    const state = store.getState();
    const cached = cache.current;
    if (cached && cached.state === state && cached.select === select) return cached.value;
    const value = select(state);
    if (cached && equal(cached.value, value)) {
      cache.current = { state, select, value: cached.value };
      return cached.value;
    }
    cache.current = { state, select, value };
    return value;
  };
  return useSyncExternalStore(store.subscribe, snapshot);
}

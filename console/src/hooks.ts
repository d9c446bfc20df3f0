// Loading API data into a view: the value, the error, and a reload. Loads started later win, but a
// reload never throws away a result that arrived: when reloads come faster than the API answers (a
// busy daemon, scheduled runs ending every few seconds), each answer is still shown, in order.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface Loaded<T> {
  data?: T;
  error?: Error;
  loading: boolean;
  reload: () => void;
}

export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: Error; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  // loads numbered as they start; `shown`: the newest whose result is on screen
  const seq = useRef({ started: 0, shown: 0, mounted: true });
  useEffect(
    () => () => {
      seq.current.mounted = false;
    },
    [],
  );
  useEffect(() => {
    const n = ++seq.current.started;
    setState((s) => ({ ...s, loading: true }));
    const settle = (next: { data?: T; error?: Error }) => {
      const c = seq.current;
      if (!c.mounted || n < c.shown) return; // a newer result is already shown
      c.shown = n;
      setState({ ...next, loading: n !== c.started });
    };
    load().then(
      (data) => settle({ data }),
      (error: Error) => settle({ error }),
    );
  }, [...deps, tick]);
  return { ...state, reload };
}

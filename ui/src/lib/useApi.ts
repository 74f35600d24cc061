// Fetch one API path, refetch on demand (refresh) and, while `pollMs` is set, every pollMs after the last answer.

import { useCallback, useEffect, useRef, useState } from "react";

import { ApiError, fetchJson, type ApiSubject } from "./api";

export interface ApiState<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
  refresh: () => void;
}

export function useApi<T>(path: string, subject: ApiSubject, pollMs: (data: T | null) => number | null): ApiState<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [nonce, setNonce] = useState(0);
  const poll = useRef(pollMs);
  poll.current = pollMs;

  // A new path (another task instance, window or filter) starts blank.
  // (React's "adjust state when a prop changes" pattern: set state during render, no effect.)
  const [shownPath, setShownPath] = useState(path);
  if (shownPath !== path) {
    setShownPath(path);
    setData(null);
    setError(null);
  }

  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    setLoading(true);
    fetchJson<T>(path, { signal: controller.signal, subject })
      .then((body) => {
        setData(body);
        setError(null);
        const every = poll.current(body);
        if (every !== null && every > 0) timer = setTimeout(() => setNonce((n) => n + 1), every);
      })
      .catch((exc: unknown) => {
        if (controller.signal.aborted) return;
        setError(exc instanceof ApiError ? exc.message : `Unexpected error: ${String(exc)}`);
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => {
      controller.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [path, subject, nonce]);

  const refresh = useCallback(() => setNonce((n) => n + 1), []);
  return { data, error, loading, refresh };
}

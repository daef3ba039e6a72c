import { useEffect, useState } from "react";

const KEY = "tinyforge.lastProject";

/** The project opened last, so Datasets/Train/Services stay one click away from team pages. */
export function useLastProject(current: number | null): number | null {
  const [last, setLast] = useState<number | null>(() => {
    const raw = window.localStorage.getItem(KEY);
    return raw && /^\d+$/.test(raw) ? Number(raw) : null;
  });
  // Remembered while rendering (React's way of deriving state from a changed prop), stored after.
  if (current !== null && current !== last) setLast(current);
  useEffect(() => {
    if (last !== null) window.localStorage.setItem(KEY, String(last));
  }, [last]);
  return last;
}

export function forgetLastProject(): void {
  window.localStorage.removeItem(KEY);
}

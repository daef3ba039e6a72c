import { useState } from "react";

export type ThemeChoice = "system" | "light" | "dark";
const KEY = "tinyforge.theme";

export function applyStoredTheme(): void {
  const choice = (window.localStorage.getItem(KEY) as ThemeChoice | null) ?? "system";
  if (choice === "system") document.documentElement.removeAttribute("data-theme");
  else document.documentElement.setAttribute("data-theme", choice);
}

export function useTheme(): [ThemeChoice, (choice: ThemeChoice) => void] {
  const [choice, setChoice] = useState<ThemeChoice>(
    () => (window.localStorage.getItem(KEY) as ThemeChoice | null) ?? "system",
  );
  const update = (next: ThemeChoice) => {
    window.localStorage.setItem(KEY, next);
    setChoice(next);
    applyStoredTheme();
  };
  return [choice, update];
}

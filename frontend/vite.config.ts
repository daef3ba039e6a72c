/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// In development the dashboard runs on Vite's server and the API on Django's;
// the proxy keeps them on one origin so session cookies and CSRF work as in production.
const backend = process.env.TINYFORGE_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      "/api": { target: backend, changeOrigin: false },
      "/v1": { target: backend, changeOrigin: false },
    },
  },
  build: {
    outDir: "dist",
    sourcemap: true,
    // Pages load by route (app/router.tsx); the largest chunks are React with the router (about
    // 370 kB) and the chart library (about 390 kB, only on pages with charts). One bundle again warns.
    chunkSizeWarningLimit: 500,
  },
  test: {
    environment: "jsdom",
    globals: true,
    setupFiles: ["./src/test/setup.ts"],
    css: false,
  },
});

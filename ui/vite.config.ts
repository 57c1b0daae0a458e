import { defineConfig } from "vitest/config";

// Preact's automatic JSX runtime; no framework plugin needed. Tauri serves the built files from
// ui/dist (tauri.conf.json `frontendDist`), and the dev server from a fixed port.
export default defineConfig({
  base: "./",
  server: { port: 5173, strictPort: true },
  clearScreen: false,
  build: { target: "es2022", outDir: "dist", emptyOutDir: true },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["test/**/*.test.{ts,tsx}"],
  },
});

// The relay serves the built app: `/hubs/<id>/pairing` returns static/index.html and `/<path>`
// returns static/<path>. So every asset URL starts with BASE.
import { resolve } from "node:path";
import { defineConfig } from "vite";

export const BASE = "/";

export default defineConfig({
  base: BASE,
  build: {
    outDir: resolve(__dirname, "../botster/relay/static"),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 1000,
  },
});

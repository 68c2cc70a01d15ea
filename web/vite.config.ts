// The build goes into the Python package (secure_link/web_dist), so `secure-link serve`,
// an editable install and the wheel all find it in one place.
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

const backend = process.env.SECURE_LINK_BACKEND ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  build: { outDir: "../secure_link/web_dist", emptyOutDir: true, target: "es2022" },
  server: {
    // Host and Origin stay the dev server's, which the backend takes as its own origin.
    proxy: {
      "/api": backend,
      "/media": backend,
      "/ws": { target: backend, ws: true },
    },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});

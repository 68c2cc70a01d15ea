// The build goes into the Python package (secure_link/web_dist), so `secure-link serve`,
// an editable install and the wheel all find it in one place.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { defineConfig, type Plugin } from "vitest/config";
import react from "@vitejs/plugin-react";

const backend = process.env.SECURE_LINK_BACKEND ?? "http://127.0.0.1:8000";

/** Writes `.br` and `.gz` beside each hashed asset, once, at the strongest settings: the server
 *  (secure_link/webclient.py) and nginx's gzip_static send them as they are, so no request pays
 *  for compression. Files too small to gain are left alone. */
function precompress(): Plugin {
  return {
    name: "secure-link-precompress",
    apply: "build",
    writeBundle(options, bundle) {
      for (const name of Object.keys(bundle).filter((file) => file.startsWith("assets/"))) {
        const path = join(options.dir ?? "", name);
        const raw = readFileSync(path);
        if (raw.length < 1024) continue;
        const brotli = brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
        const gzip = gzipSync(raw, { level: 9 });
        if (brotli.length < raw.length) writeFileSync(`${path}.br`, brotli);
        if (gzip.length < raw.length) writeFileSync(`${path}.gz`, gzip);
      }
    },
  };
}

export default defineConfig({
  plugins: [react(), precompress()],
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

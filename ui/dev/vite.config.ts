// `npm run dev`: the host harness (dev/host.tsx) on http://127.0.0.1:5174/, serving the built bundles from
// src/airflow_resilience/airflow/ui_dist at /ui_dist/ as they are (not transformed). Rebuild with `make ui`.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { defineConfig, type Plugin } from "vite";

const dist = resolve(import.meta.dirname, "../../src/airflow_resilience/airflow/ui_dist");

function rawBundles(): Plugin {
  return {
    name: "raw-ui-dist",
    configureServer(server) {
      server.middlewares.use("/ui_dist/", (req, res, next) => {
        const name = (req.url ?? "").split("?")[0].replace(/^\/+/, "");
        if (!/^[\w-]+\.js$/.test(name)) return next();
        try {
          const body = readFileSync(resolve(dist, name));
          res.setHeader("Content-Type", "text/javascript");
          res.setHeader("Cache-Control", "no-store");
          res.end(body);
        } catch {
          res.statusCode = 404;
          res.end();
        }
      });
    },
  };
}

export default defineConfig({
  root: import.meta.dirname,
  oxc: { jsx: { runtime: "automatic", importSource: "react" } },
  plugins: [rawBundles()],
  server: { host: "127.0.0.1", port: 5174, strictPort: true },
  logLevel: "info",
});

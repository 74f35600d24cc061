// Builds both plugin bundles (a UMD build has one entry, so Vite runs once per bundle) into
// src/airflow_resilience/airflow/ui_dist, or into --out-dir DIR (the reproducibility check).
import { mkdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const args = process.argv.slice(2);
const at = args.indexOf("--out-dir");
const outDir = at >= 0 ? resolve(args[at + 1]) : resolve(root, "../src/airflow_resilience/airflow/ui_dist");

// The build must not depend on the machine's environment (NODE_ENV=development would pick the dev JSX runtime).
process.env.NODE_ENV = "production";
process.env.RESILIENCE_OUT_DIR = outDir;
mkdirSync(outDir, { recursive: true });

for (const bundle of ["task-instance", "fleet"]) {
  process.env.RESILIENCE_BUNDLE = bundle;
  await build({ configFile: join(root, "vite.config.ts"), mode: "production" });
  const size = statSync(join(outDir, `${bundle}.js`)).size;
  console.log(`built ${relative(process.cwd(), join(outDir, `${bundle}.js`))} (${(size / 1024).toFixed(1)} KiB)`);
}

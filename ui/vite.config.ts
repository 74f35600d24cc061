// Library-mode build of ONE plugin bundle; scripts/build.mjs runs it once per bundle (RESILIENCE_BUNDLE).
//
// Airflow 3.3's UI loads a plugin "react_app" with a dynamic import() of its bundle_url, then reads
// globalThis[<plugin name>] or globalThis.AirflowPlugin, which must be a function component. So the
// bundle is UMD named AirflowPlugin with a default export only (the UMD wrapper falls back to globalThis
// when `this` is undefined, as in an ES module), and React, ReactDOM, the JSX runtime, Chakra UI and
// Emotion are taken from the globals the host page sets: the bundle carries no copy of them.
import { resolve } from "node:path";
import { defineConfig, type UserConfig } from "vite";

export const BUNDLES = {
  "task-instance": "src/task-instance.tsx",
  fleet: "src/fleet.tsx",
} as const;

export type BundleName = keyof typeof BUNDLES;

// Module id -> the global the Airflow 3.3 host page sets (airflow/ui/src/main.tsx: Reflect.set(globalThis, ...)).
export const HOST_GLOBALS: Record<string, string> = {
  react: "React",
  "react-dom": "ReactDOM",
  "react/jsx-runtime": "ReactJSXRuntime",
  "@chakra-ui/react": "ChakraUI",
  "@emotion/react": "EmotionReact",
};

export const OUT_DIR = resolve(import.meta.dirname, "../src/airflow_resilience/airflow/ui_dist");

export default defineConfig((): UserConfig => {
  const bundle = (process.env.RESILIENCE_BUNDLE ?? "task-instance") as BundleName;
  if (!(bundle in BUNDLES)) {
    throw new Error(`RESILIENCE_BUNDLE must be one of ${Object.keys(BUNDLES).join(", ")}, got ${bundle}`);
  }
  return {
    root: import.meta.dirname,
    logLevel: "warn",
    // No public dir, no env files: nothing from the machine leaks into the bundle.
    publicDir: false,
    envDir: false,
    oxc: { jsx: { runtime: "automatic", importSource: "react", development: false } },
    build: {
      outDir: process.env.RESILIENCE_OUT_DIR ?? OUT_DIR,
      emptyOutDir: false,
      sourcemap: false,
      minify: true,
      target: "es2022",
      reportCompressedSize: false,
      copyPublicDir: false,
      lib: {
        entry: resolve(import.meta.dirname, BUNDLES[bundle]),
        name: "AirflowPlugin",
        formats: ["iife"],
        fileName: () => `${bundle}.js`,
      },
      rolldownOptions: {
        external: Object.keys(HOST_GLOBALS),
        output: {
          exports: "default",
          globals: HOST_GLOBALS,
          // Stable output: no hashes (fixed file names), no legal-comment or banner timestamps.
          comments: { legal: false },
        },
      },
    },
  };
});

// Loads each built bundle the way Airflow 3.3's UI does, in plain Node as a real ES module:
//   globalThis.AirflowPlugin = undefined; await import(url); globalThis[name] ?? globalThis.AirflowPlugin
// with the host's globals set (React, ReactDOM, ReactJSXRuntime, ChakraUI, EmotionReact from node_modules,
// the versions the host carries) and, to be sure the bundle does not depend on them, an AMD `define` and
// CommonJS `module`/`exports` globals another script could have left. Then it server-renders the component
// inside ChakraProvider and checks the first paint. Exit 1 on any failure.
//
//   node scripts/smoke-bundle.mjs [DIR]   (default: src/airflow_resilience/airflow/ui_dist)
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dir = resolve(process.argv[2] ?? join(root, "../src/airflow_resilience/airflow/ui_dist"));
const require = createRequire(join(root, "package.json"));

const React = require("react");
const ChakraUI = require("@chakra-ui/react");
Object.assign(globalThis, {
  React,
  ReactDOM: require("react-dom"),
  ReactJSXRuntime: require("react/jsx-runtime"),
  ChakraUI,
  EmotionReact: require("@emotion/react"),
});
const { renderToString } = require("react-dom/server");

// Traps: a UMD wrapper that took one of these branches would not reach globalThis.
const amdCalls = [];
globalThis.define = Object.assign((...args) => amdCalls.push(args), { amd: {} });
globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;

const expected = {
  "task-instance": {
    name: "resilience_task_instance",
    props: { dagId: "etl", runId: "manual__2026-12-02T06:00:00+00:00", taskId: "load", mapIndex: undefined },
    text: ["Resilience", "Loading what airflow-resilience recorded"],
  },
  fleet: { name: "resilience_fleet", props: {}, text: ["Resilience fleet", "Loading the fleet"] },
};

const scratch = mkdtempSync(join(tmpdir(), "resilience-smoke-"));
let failed = 0;
try {
  for (const [bundle, want] of Object.entries(expected)) {
    // A .mjs copy: Node loads it as an ES module, as the browser's import() does (top-level `this` undefined).
    const copy = join(scratch, `${bundle}.mjs`);
    copyFileSync(join(dir, `${bundle}.js`), copy);
    globalThis.AirflowPlugin = undefined;
    await import(pathToFileURL(copy).href);
    let component = globalThis[want.name];
    if (component === undefined) component = globalThis.AirflowPlugin;
    const problems = [];
    if (typeof component !== "function") problems.push(`globalThis.AirflowPlugin is ${typeof component}, not a function`);
    else {
      const html = renderToString(
        React.createElement(ChakraUI.ChakraProvider, { value: ChakraUI.defaultSystem }, React.createElement(component, want.props)),
      );
      for (const text of want.text) if (!html.includes(text)) problems.push(`first render lacks "${text}"`);
    }
    if (amdCalls.length) problems.push("called an AMD define()");
    if (Object.keys(globalThis.module.exports).length) problems.push("wrote to module.exports");
    if (problems.length) {
      failed++;
      console.error(`FAIL ${bundle}.js: ${problems.join("; ")}`);
    } else console.log(`ok   ${bundle}.js: a function component on globalThis.AirflowPlugin, renders in ChakraProvider`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

// The committed bundles (src/airflow_resilience/airflow/ui_dist), as shipped: no copy of React or Chakra, only
// host globals, every Chakra export they use present in Airflow's ChakraUI namespace, and they render the
// contract's example when loaded like a module (strict mode, `this` undefined) with the host's globals.
import * as ChakraUI from "@chakra-ui/react";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { screen } from "@testing-library/react";
import { createElement, type ComponentType } from "react";
import { afterEach, describe, expect, it } from "vitest";

import pkg from "../package.json";
import host from "./fixtures/host-globals.json";
import { fleetPayload, taskInstancePayload } from "./fixtures/payloads";
import { renderInHost, stubFetch } from "./render";

const root = resolve(import.meta.dirname, "..");
const dist = resolve(root, "../src/airflow_resilience/airflow/ui_dist");
const BUNDLES = ["task-instance", "fleet"] as const;
const read = (bundle: string) => readFileSync(join(dist, `${bundle}.js`), "utf8");

/** Run the bundle as the body of a strict function called with this === undefined, as a module would. */
function load(code: string): { component: unknown; chakraUsed: Set<string> } {
  const chakraUsed = new Set<string>();
  const real = globalThis.ChakraUI;
  globalThis.ChakraUI = new Proxy(
    { ...ChakraUI },
    {
      get(target, name, receiver) {
        if (typeof name === "string") chakraUsed.add(name);
        return Reflect.get(target, name, receiver);
      },
    },
  );
  globalThis.AirflowPlugin = undefined;
  try {
    new Function(`"use strict";\n${code}`).call(undefined);
  } finally {
    // Keep the proxy until the render is done: names are read at render time. Restored in afterEach.
    restore = () => {
      globalThis.ChakraUI = real;
    };
  }
  return { component: globalThis.AirflowPlugin, chakraUsed };
}

let restore = () => {};
afterEach(() => restore());

declare global {
  var AirflowPlugin: unknown;
  var ChakraUI: unknown;
}

describe.each(BUNDLES)("%s.js", (bundle) => {
  const code = read(bundle);

  it("is small and carries no copy of React, ReactDOM, Chakra or Emotion", () => {
    expect(code.length).toBeGreaterThan(2_000);
    expect(code.length).toBeLessThan(64 * 1024);
    for (const marker of [
      "react.transitional.element", // React's element symbol
      "__CLIENT_INTERNALS_DO_NOT_USE_OR_WARN_USERS_THEY_CANNOT_UPGRADE",
      "createSystem",
      "@emotion/cache",
      "chakra-ui",
      "@chakra-ui",
      "node_modules",
      root,
    ]) {
      expect(code, marker).not.toContain(marker);
    }
  });

  it("is an IIFE over the host globals only", () => {
    expect(code.startsWith("var AirflowPlugin=(function(")).toBe(true);
    const globals = /\}\)\(([\w,]+)\);\s*$/.exec(code)?.[1].split(",") ?? [];
    expect(globals.length).toBeGreaterThan(0);
    for (const name of globals) expect(host.globals).toContain(name);
    expect(globals).toContain("ReactJSXRuntime");
    expect(code).toContain("globalThis.AirflowPlugin=");
  });

  it("renders the example, using only Chakra exports the host has", async () => {
    stubFetch((url) => ({ body: url.pathname.endsWith("/fleet") ? fleetPayload() : taskInstancePayload() }));
    const { component, chakraUsed } = load(code);
    expect(typeof component).toBe("function");
    const props = bundle === "fleet" ? {} : { dagId: "etl", runId: "r", taskId: "load" };
    renderInHost(createElement(component as ComponentType<object>, props));
    if (bundle === "fleet") {
      expect((await screen.findByTestId("fleet-reason-signal.sigkill")).textContent).toContain("signal.sigkill");
      expect(screen.getByTestId("fleet-total-saved_seconds").textContent).toContain("1 h 20 min");
    } else {
      expect((await screen.findByTestId("attempt-kind-1")).textContent).toBe("infrastructure");
      expect(screen.getByTestId("attempt-reason-1").textContent).toBe("signal.sigkill");
      expect(screen.getByTestId("attempt-verdict-1").textContent).toBe("grant");
      expect(screen.getByTestId("checkpoint-panel").textContent).toContain("parts: 42 items done");
    }
    expect(chakraUsed.size).toBeGreaterThan(5);
    const missing = [...chakraUsed].filter((name) => !host.chakraExports.includes(name));
    expect(missing).toEqual([]);
  });
});

describe("host match", () => {
  it("the React devDependency is the host's React", () => {
    expect(host.react).toEqual([pkg.devDependencies.react]);
    expect(pkg.devDependencies["react-dom"]).toBe(pkg.devDependencies.react);
  });

  it("the Chakra devDependency has exactly the host's ChakraUI export names", () => {
    expect(Object.keys(ChakraUI).sort()).toEqual(host.chakraExports);
  });

  it("a real ES-module import() finds the component on globalThis, despite AMD/CommonJS globals", () => {
    const out = execFileSync(process.execPath, [join(root, "scripts/smoke-bundle.mjs"), dist], { encoding: "utf8" });
    expect(out).toContain("ok   task-instance.js");
    expect(out).toContain("ok   fleet.js");
  });
});

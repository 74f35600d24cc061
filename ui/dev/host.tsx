// A stand-in for Airflow 3.3's UI page, to look at the built bundles without an Airflow: it sets the same
// globals, puts a ChakraProvider around the plugin, loads the bundle from ui_dist the way Airflow does
// (globalThis.AirflowPlugin = undefined; import(url); globalThis.AirflowPlugin), and answers the API with the
// test fixtures (tests/fixtures/payloads.ts). Query parameters:
//   ?bundle=task-instance|fleet   which bundle (default task-instance)
//   &scenario=empty|running|error401|error500   (task-instance) / empty (fleet)
//   &theme=dark
import * as ChakraUI from "@chakra-ui/react";
import * as EmotionReact from "@emotion/react";
import React, { type ComponentType } from "react";
import * as ReactDOM from "react-dom";
import { createRoot } from "react-dom/client";
import * as ReactJSXRuntime from "react/jsx-runtime";

import { fleetPayload, taskInstancePayload } from "../tests/fixtures/payloads";

Object.assign(globalThis, { React, ReactDOM, ReactJSXRuntime, ChakraUI, EmotionReact });

const params = new URLSearchParams(location.search);
const bundle = params.get("bundle") === "fleet" ? "fleet" : "task-instance";
const scenario = params.get("scenario") ?? "";

function answer(url: URL): { status: number; body: unknown } {
  if (scenario === "error401") return { status: 401, body: { detail: "Not authenticated" } };
  if (scenario === "error500") return { status: 500, body: { detail: "database is locked" } };
  if (url.pathname.endsWith("/fleet")) {
    const payload = fleetPayload({ window: url.searchParams.get("since") ?? "7d", dag_id: url.searchParams.get("dag_id") });
    if (scenario === "empty") {
      payload.totals = Object.fromEntries(Object.keys(payload.totals).map((key) => [key, 0])) as typeof payload.totals;
      payload.by_reason = [];
      payload.by_day = [];
    }
    return { status: 200, body: payload };
  }
  const payload = taskInstancePayload();
  if (scenario === "empty") {
    return {
      status: 200,
      body: { ...payload, try_number: 1, attempts: [{ ...payload.attempts[1], try_number: 1 }], checkpoint: null, watermarks: [] },
    };
  }
  if (scenario === "running") return { status: 200, body: { ...payload, state: "running" } };
  return { status: 200, body: payload };
}

const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async (input, init) => {
  const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url, document.baseURI);
  if (!url.pathname.includes("/resilience/ui/v1/")) return realFetch(input, init);
  const { status, body } = answer(url);
  console.log(`[host] ${init?.credentials} GET ${url.pathname}${url.search} -> ${status}`);
  await new Promise((resolve) => setTimeout(resolve, 150));
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
};

async function main() {
  (globalThis as { AirflowPlugin?: unknown }).AirflowPlugin = undefined;
  await import(/* @vite-ignore */ new URL(`ui_dist/${bundle}.js`, document.baseURI).href);
  const Plugin = (globalThis as { AirflowPlugin?: unknown }).AirflowPlugin;
  if (typeof Plugin !== "function") throw new TypeError(`Expected function, got ${typeof Plugin}`);
  const Component = Plugin as ComponentType<Record<string, unknown>>;
  const props =
    bundle === "fleet" ? {} : { dagId: "etl", runId: "scheduled__2026-12-02T06:00:00+00:00", taskId: "load", mapIndex: undefined };
  if (params.get("theme") === "dark") document.documentElement.classList.add("dark");
  createRoot(document.getElementById("root")!).render(
    <ChakraUI.ChakraProvider value={ChakraUI.defaultSystem}>
      <ChakraUI.Box p={4} bg="bg" color="fg" minH="100vh">
        <Component {...props} />
      </ChakraUI.Box>
    </ChakraUI.ChakraProvider>,
  );
}

main().catch((exc) => {
  document.body.textContent = `host harness: ${exc}`;
  console.error(exc);
});

// Hands a bundle's component to Airflow's UI. The host sets globalThis.AirflowPlugin = undefined, import()s the
// bundle as an ES module, then reads globalThis[<plugin name>] ?? globalThis.AirflowPlugin. The bundle is an
// IIFE whose `var AirflowPlugin` is module-scoped under import(), so the component is put on globalThis here,
// explicitly: no reliance on `this`, `exports`, `module` or an AMD `define` another script may have set.
import type { ComponentType } from "react";

export function registerPlugin<P extends object>(component: ComponentType<P>): ComponentType<P> {
  (globalThis as { AirflowPlugin?: unknown }).AirflowPlugin = component;
  return component;
}

// What Airflow 3.3's UI page provides to a plugin: the globals of airflow/ui/src/main.tsx, and a Chakra
// provider around the plugin's component (render() in tests/render.tsx).
import * as ChakraUI from "@chakra-ui/react";
import * as EmotionReact from "@emotion/react";
import { cleanup } from "@testing-library/react";
import React from "react";
import * as ReactDOM from "react-dom";
import * as ReactJSXRuntime from "react/jsx-runtime";
import { afterEach } from "vitest";

Object.assign(globalThis, { React, ReactDOM, ReactJSXRuntime, ChakraUI, EmotionReact });

// React 19 act() environment for @testing-library/react.
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

afterEach(() => {
  cleanup();
});

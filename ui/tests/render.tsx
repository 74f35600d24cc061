import { ChakraProvider, defaultSystem } from "@chakra-ui/react";
import { render, type RenderResult } from "@testing-library/react";
import type { ReactElement } from "react";
import { vi } from "vitest";

/** Render inside the provider the host page puts around plugins. */
export function renderInHost(element: ReactElement): RenderResult {
  return render(<ChakraProvider value={defaultSystem}>{element}</ChakraProvider>);
}

export interface StubbedResponse {
  status?: number;
  body: unknown;
}

/**
 * Stub global fetch: each call takes the answer for its URL from `answer(url)` (a function, so a test can
 * change what the API says between calls). Returns the mock to inspect the calls.
 */
export function stubFetch(answer: (url: URL) => StubbedResponse) {
  const mock = vi.fn(async (input: RequestInfo | URL, _init?: RequestInit) => {
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
    const { status = 200, body } = answer(url);
    return new Response(typeof body === "string" ? body : JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json" },
    });
  });
  vi.stubGlobal("fetch", mock);
  return mock;
}

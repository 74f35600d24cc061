import { Box, Button, HStack, Heading, Input, NativeSelect, SimpleGrid, Spinner, Stat, Text } from "@chakra-ui/react";
import { useEffect, useState, type FormEvent } from "react";

import { DEFAULT_FLEET_WINDOW, FLEET_WINDOWS, fleetPath } from "../lib/api";
import { formatTimestamp } from "../lib/format";
import {
  TOP_LISTS,
  computeChart,
  dayChart,
  emptyText,
  isEmpty,
  reasonChart,
  topChart,
  totalCards,
  verdictChart,
  windowLabel,
} from "../lib/fleetView";
import { KIND_ORDER, kindSwatch } from "../lib/palette";
import type { FleetPayload, FleetWindow } from "../lib/types";
import { useApi } from "../lib/useApi";
import { HorizontalBarChart, Legend, StackedBarChart } from "./charts";
import { ErrorBox, Muted, Section } from "./common";

/** How long the DAG id box waits after the last key before it filters. */
export const FILTER_DEBOUNCE_MS = 400;

const noPolling = () => null;

/** The fleet dashboard (plugin destination "nav"): failures, verdicts and budgets across DAGs. */
export function FleetPage() {
  const [window, setWindow] = useState<FleetWindow>(DEFAULT_FLEET_WINDOW);
  const [draft, setDraft] = useState("");
  const [dagId, setDagId] = useState("");

  useEffect(() => {
    const timer = setTimeout(() => setDagId(draft.trim()), FILTER_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [draft]);

  const { data, error, loading, refresh } = useApi<FleetPayload>(fleetPath(window, dagId), "fleet", noPolling);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setDagId(draft.trim());
  };

  return (
    <Box data-testid="resilience-fleet" p={4}>
      <HStack justifyContent="space-between" flexWrap="wrap" gap={3}>
        <Heading as="h2" size="lg">
          Resilience fleet
        </Heading>
        <form onSubmit={submit}>
          <HStack gap={2}>
            <NativeSelect.Root size="sm" width="9rem">
              <NativeSelect.Field
                data-testid="fleet-window"
                aria-label="Window"
                value={window}
                onChange={(event) => setWindow(event.currentTarget.value as FleetWindow)}
              >
                {FLEET_WINDOWS.map((value) => (
                  <option key={value} value={value}>
                    last {value}
                  </option>
                ))}
              </NativeSelect.Field>
              <NativeSelect.Indicator />
            </NativeSelect.Root>
            <Input
              size="sm"
              width="14rem"
              placeholder="DAG id (all DAGs)"
              aria-label="DAG id"
              data-testid="fleet-dag-filter"
              value={draft}
              onChange={(event) => setDraft(event.currentTarget.value)}
            />
            <Button size="sm" variant="outline" onClick={refresh} disabled={loading} data-testid="fleet-refresh">
              Refresh
            </Button>
            {loading && data ? <Spinner size="xs" /> : null}
          </HStack>
        </form>
      </HStack>
      {error ? <ErrorBox message={error} /> : null}
      {!data && loading ? (
        <HStack py={6} gap={3}>
          <Spinner size="sm" />
          <Muted>Loading the fleet…</Muted>
        </HStack>
      ) : null}
      {data ? <FleetBody data={data} /> : null}
    </Box>
  );
}

function FleetBody({ data }: { data: FleetPayload }) {
  const empty = isEmpty(data);
  return (
    <>
      <Muted testId="fleet-range">
        {data.dag_id ? `DAG ${data.dag_id}, ` : "All DAGs, "}
        {windowLabel(data.window)}: {formatTimestamp(data.since)} to {formatTimestamp(data.until)}
      </Muted>
      {empty ? (
        <Text mt={3} data-testid="fleet-empty">
          {emptyText(data)}
        </Text>
      ) : null}
      <SimpleGrid columns={{ base: 2, md: 4, xl: 7 }} gap={3} mt={4}>
        {totalCards(data.totals).map((card) => (
          <Stat.Root key={card.key} data-testid={`fleet-total-${card.key}`} borderWidth="1px" borderRadius="md" p={3}>
            <Stat.Label>{card.label}</Stat.Label>
            <Stat.ValueText>{card.value}</Stat.ValueText>
            {card.help ? <Stat.HelpText>{card.help}</Stat.HelpText> : null}
          </Stat.Root>
        ))}
      </SimpleGrid>
      {empty ? null : <FleetCharts data={data} />}
    </>
  );
}

function FleetCharts({ data }: { data: FleetPayload }) {
  return (
    <>
      <Section title="Failed attempts by day" testId="fleet-by-day">
        <StackedBarChart chart={dayChart(data)} label="Failed attempts by day, stacked by kind" testId="fleet-day" />
        <Legend items={KIND_ORDER.map((kind) => ({ key: kind, label: kind, fill: kindSwatch(kind).fill }))} />
      </Section>
      <SimpleGrid columns={{ base: 1, lg: 2 }} gap={4}>
        <Section title="By reason" testId="fleet-by-reason">
          <HorizontalBarChart
            chart={reasonChart(data)}
            label="Failed attempts by reason"
            rowTestId={(reason) => `fleet-reason-${reason}`}
          />
        </Section>
        <Box>
          <Section title="Verdicts" testId="fleet-verdicts">
            <HorizontalBarChart
              chart={verdictChart(data)}
              label="Grants, stock retries and exhausted budgets"
              rowTestId={(verdict) => `fleet-verdict-${verdict}`}
            />
          </Section>
          <Section title="Compute redone vs saved" testId="fleet-compute">
            <HorizontalBarChart
              chart={computeChart(data)}
              label="Seconds of work redone after failures and saved by checkpoints"
              rowTestId={(key) => `fleet-compute-${key}`}
            />
          </Section>
        </Box>
      </SimpleGrid>
      <SimpleGrid columns={{ base: 1, md: 2, xl: 4 }} gap={4}>
        {TOP_LISTS.map((list) => {
          const rows = data.top?.[list.key] ?? [];
          return (
            <Section key={list.key} title={list.title} testId={`fleet-top-${list.key}`}>
              {rows.length ? (
                <HorizontalBarChart
                  chart={topChart(rows)}
                  label={list.title}
                  labelChars={22}
                  rowTestId={(name) => `fleet-top-${list.key}-${name}`}
                />
              ) : (
                <Muted>none</Muted>
              )}
            </Section>
          );
        })}
      </SimpleGrid>
    </>
  );
}

import { Box, Button, Code, HStack, Heading, Progress, SimpleGrid, Spinner, Table, Text } from "@chakra-ui/react";
import type { ReactNode } from "react";

import { taskInstancePath } from "../lib/api";
import type { TaskInstancePayload } from "../lib/types";
import {
  NO_FAILURE_TEXT,
  POLL_INTERVAL_MS,
  attemptRows,
  budgetLines,
  checkpointView,
  hasFailedAttempt,
  shouldPoll,
  summaryLine,
  watermarkRows,
  type AttemptRow,
  type CheckpointView,
  type WatermarkRow,
} from "../lib/taskInstanceView";
import { useApi } from "../lib/useApi";
import { DocsLink, ErrorBox, Muted, PaletteBadge, Section } from "./common";

export interface TaskInstanceTabProps {
  dagId: string;
  runId: string;
  taskId: string;
  mapIndex?: string | number;
}

const pollEvery = (data: TaskInstancePayload | null) => (data && shouldPoll(data.state) ? POLL_INTERVAL_MS : null);

/** The "Resilience" tab of Airflow's task-instance page (plugin destination "task_instance"). */
export function TaskInstanceTab({ dagId, runId, taskId, mapIndex }: TaskInstanceTabProps) {
  const path = taskInstancePath({ dagId, runId, taskId, mapIndex });
  const { data, error, loading, refresh } = useApi<TaskInstancePayload>(path, "task-instance", pollEvery);
  const live = !!data && shouldPoll(data.state);

  return (
    <Box data-testid="resilience-tab" p={2}>
      <HStack justifyContent="space-between" flexWrap="wrap" gap={2}>
        <Heading as="h2" size="md">
          Resilience
        </Heading>
        <HStack gap={3}>
          {loading && data ? <Spinner size="xs" /> : null}
          {live ? <Muted testId="resilience-live">refreshing every 10 s while {data?.state}</Muted> : null}
          <Button size="xs" variant="outline" onClick={refresh} data-testid="resilience-refresh" disabled={loading}>
            Refresh
          </Button>
        </HStack>
      </HStack>
      {error ? <ErrorBox message={error} /> : null}
      {!data && loading ? (
        <HStack py={6} gap={3} data-testid="resilience-loading">
          <Spinner size="sm" />
          <Muted>Loading what airflow-resilience recorded…</Muted>
        </HStack>
      ) : null}
      {data ? <TaskInstanceBody data={data} /> : null}
    </Box>
  );
}

function TaskInstanceBody({ data }: { data: TaskInstancePayload }) {
  const rows = attemptRows(data);
  return (
    <>
      <Muted testId="resilience-summary">{summaryLine(data)}</Muted>
      {hasFailedAttempt(data) ? null : (
        <Text mt={3} data-testid="resilience-no-failure">
          {NO_FAILURE_TEXT}
        </Text>
      )}
      <Section title="Attempts" testId="attempts-panel">
        <AttemptsTable rows={rows} />
      </Section>
      <Budgets data={data} />
      <Section title="Checkpoint" testId="checkpoint-panel">
        <CheckpointPanel view={checkpointView(data.checkpoint)} />
      </Section>
      <Section title="Watermarks" testId="watermarks-panel">
        <WatermarksPanel rows={watermarkRows(data.watermarks)} />
      </Section>
    </>
  );
}

function AttemptsTable({ rows }: { rows: AttemptRow[] }) {
  if (!rows.length) return <Muted testId="resilience-no-attempts">No attempt recorded yet.</Muted>;
  return (
    <Table.ScrollArea>
      <Table.Root size="sm" variant="line">
        <Table.Header>
          <Table.Row>
            <Table.ColumnHeader>Try</Table.ColumnHeader>
            <Table.ColumnHeader>State</Table.ColumnHeader>
            <Table.ColumnHeader>Start</Table.ColumnHeader>
            <Table.ColumnHeader>End</Table.ColumnHeader>
            <Table.ColumnHeader>Duration</Table.ColumnHeader>
            <Table.ColumnHeader>Host</Table.ColumnHeader>
            <Table.ColumnHeader>Cause</Table.ColumnHeader>
            <Table.ColumnHeader>Reason</Table.ColumnHeader>
            <Table.ColumnHeader>Evidence</Table.ColumnHeader>
            <Table.ColumnHeader>Verdict</Table.ColumnHeader>
            <Table.ColumnHeader>Checkpoint</Table.ColumnHeader>
          </Table.Row>
        </Table.Header>
        <Table.Body>
          {rows.map((row) => (
            <Table.Row key={row.tryNumber} data-testid={`attempt-row-${row.tryNumber}`} verticalAlign="top">
              <Table.Cell>{row.tryNumber}</Table.Cell>
              <Table.Cell>{row.state}</Table.Cell>
              <Table.Cell whiteSpace="nowrap">{row.start}</Table.Cell>
              <Table.Cell whiteSpace="nowrap">{row.end}</Table.Cell>
              <Table.Cell whiteSpace="nowrap">{row.duration}</Table.Cell>
              <Table.Cell>{row.host}</Table.Cell>
              <Table.Cell>
                {row.kind ? (
                  <PaletteBadge palette={row.kindPalette} title={row.kindHint} testId={`attempt-kind-${row.tryNumber}`}>
                    {row.kind}
                  </PaletteBadge>
                ) : (
                  <Text data-testid={`attempt-kind-${row.tryNumber}`}>—</Text>
                )}
              </Table.Cell>
              <Table.Cell>
                {row.reason ? (
                  <Code data-testid={`attempt-reason-${row.tryNumber}`} whiteSpace="nowrap">
                    {row.reason}
                  </Code>
                ) : (
                  <Text data-testid={`attempt-reason-${row.tryNumber}`}>—</Text>
                )}
              </Table.Cell>
              <Table.Cell minW="16rem" maxW="32rem" whiteSpace="normal" wordBreak="break-word">
                {row.summary ?? "—"}
              </Table.Cell>
              <Table.Cell>
                {row.verdict ? (
                  <PaletteBadge
                    palette={row.verdictPalette}
                    title={row.verdictHint}
                    testId={`attempt-verdict-${row.tryNumber}`}
                  >
                    {row.verdict}
                  </PaletteBadge>
                ) : (
                  <Text data-testid={`attempt-verdict-${row.tryNumber}`}>—</Text>
                )}
              </Table.Cell>
              <Table.Cell>{row.checkpoint}</Table.Cell>
            </Table.Row>
          ))}
        </Table.Body>
      </Table.Root>
    </Table.ScrollArea>
  );
}

function Budgets({ data }: { data: TaskInstancePayload }) {
  const lines = budgetLines(data.budgets);
  return (
    <Section title="Budgets" testId="budgets-panel">
      {lines.length ? (
        <SimpleGrid columns={{ base: 1, md: 3 }} gap={4}>
          {lines.map((line) => (
            <Box key={line.key} data-testid={`budget-${line.key}`}>
              <Text fontSize="xs" color="fg.muted">
                {line.label}
              </Text>
              <Text fontWeight="medium">{line.text}</Text>
              <Progress.Root value={line.percentUsed} size="xs" colorPalette={line.palette} my={1}>
                <Progress.Track>
                  <Progress.Range />
                </Progress.Track>
              </Progress.Root>
              <Text fontSize="xs" color="fg.muted">
                {line.detail}
              </Text>
            </Box>
          ))}
        </SimpleGrid>
      ) : (
        <Muted>No budget is recorded for this task instance.</Muted>
      )}
    </Section>
  );
}

function Field({ label, children, testId }: { label: string; children: ReactNode; testId?: string }) {
  return (
    <Box data-testid={testId}>
      <Text fontSize="xs" color="fg.muted">
        {label}
      </Text>
      <Box>{children}</Box>
    </Box>
  );
}

function CheckpointPanel({ view }: { view: CheckpointView | null }) {
  if (!view) {
    return (
      <Text data-testid="resilience-empty-checkpoint">
        This task never checkpointed — see <DocsLink page="checkpoints.md" />
      </Text>
    );
  }
  return (
    <SimpleGrid columns={{ base: 1, md: 2, lg: 4 }} gap={3}>
      <Field label="Items done" testId="checkpoint-loops">
        {view.loops.length ? view.loops.map((line) => <Text key={line}>{line}</Text>) : <Text>no loop</Text>}
      </Field>
      <Field label="Steps" testId="checkpoint-steps">
        <Text>{view.steps}</Text>
      </Field>
      <Field label="Saved values" testId="checkpoint-values">
        <Text>{view.values}</Text>
      </Field>
      <Field label="Resume point" testId="checkpoint-resume">
        <Text>{view.resume}</Text>
      </Field>
      <Field label="Written by" testId="checkpoint-written-by">
        <Text>
          {view.writtenBy}, generation {view.generation}
        </Text>
      </Field>
      <Field label="Size" testId="checkpoint-size">
        <Text>{view.size}</Text>
      </Field>
      <Field label="Last write" testId="checkpoint-updated">
        <Text>{view.updated}</Text>
      </Field>
    </SimpleGrid>
  );
}

function WatermarksPanel({ rows }: { rows: WatermarkRow[] }) {
  if (!rows.length) {
    return (
      <Text data-testid="resilience-empty-watermarks">
        This task holds no watermarks — see <DocsLink page="incremental-loads.md" />
      </Text>
    );
  }
  return (
    <Table.ScrollArea>
      <Table.Root size="sm" variant="line">
        <Table.Header>
          <Table.Row>
            <Table.ColumnHeader>Name</Table.ColumnHeader>
            <Table.ColumnHeader>Role</Table.ColumnHeader>
            <Table.ColumnHeader>Value</Table.ColumnHeader>
            <Table.ColumnHeader>Version</Table.ColumnHeader>
            <Table.ColumnHeader>At</Table.ColumnHeader>
          </Table.Row>
        </Table.Header>
        <Table.Body>
          {rows.map((row) => (
            <Table.Row key={row.key} data-testid={`watermark-row-${row.name}`}>
              <Table.Cell>
                <Code>{row.name}</Code>
              </Table.Cell>
              <Table.Cell>
                <PaletteBadge palette={row.palette}>{row.role}</PaletteBadge>
              </Table.Cell>
              <Table.Cell fontFamily="mono" wordBreak="break-all">
                {row.value}
              </Table.Cell>
              <Table.Cell>{row.version}</Table.Cell>
              <Table.Cell whiteSpace="nowrap">{row.at}</Table.Cell>
            </Table.Row>
          ))}
        </Table.Body>
      </Table.Root>
    </Table.ScrollArea>
  );
}

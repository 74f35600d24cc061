// Inline SVG drawings of the geometry in lib/charts.ts. Text uses currentColor, so light and dark themes work.

import { Box, HStack, Text } from "@chakra-ui/react";

import { clip, type HBarChart, type StackedChart } from "../lib/charts";
import { formatCount } from "../lib/format";

export function StackedBarChart({ chart, label, testId }: { chart: StackedChart; label: string; testId?: string }) {
  const { plot } = chart;
  return (
    <svg
      role="img"
      aria-label={label}
      data-testid={testId}
      viewBox={`0 0 ${chart.width} ${chart.height}`}
      width="100%"
      style={{ maxWidth: chart.width, display: "block" }}
    >
      {chart.ticks.map((tick) => (
        <g key={tick.value}>
          <line
            x1={plot.x}
            x2={plot.x + plot.width}
            y1={tick.y}
            y2={tick.y}
            stroke="currentColor"
            strokeOpacity={0.15}
          />
          <text x={plot.x - 6} y={tick.y} dy="0.32em" textAnchor="end" fontSize={10} fill="currentColor">
            {formatCount(tick.value)}
          </text>
        </g>
      ))}
      {chart.bars.map((bar) => (
        <g key={bar.label} data-testid={testId ? `${testId}-${bar.label}` : undefined}>
          {bar.segments.map((segment) => (
            <rect
              key={segment.key}
              x={segment.x}
              y={segment.y}
              width={segment.width}
              height={segment.height}
              fill={segment.fill}
            >
              <title>{`${bar.label} ${segment.key}: ${formatCount(segment.value)}`}</title>
            </rect>
          ))}
          {bar.shownLabel ? (
            <text
              x={bar.x + bar.width / 2}
              y={plot.y + plot.height + 14}
              textAnchor="middle"
              fontSize={10}
              fill="currentColor"
            >
              {bar.shownLabel}
            </text>
          ) : null}
        </g>
      ))}
    </svg>
  );
}

export function HorizontalBarChart({
  chart,
  label,
  rowTestId,
  labelChars = 30,
}: {
  chart: HBarChart;
  label: string;
  rowTestId?: (key: string) => string;
  labelChars?: number;
}) {
  return (
    <svg
      role="img"
      aria-label={label}
      viewBox={`0 0 ${chart.width} ${Math.max(1, chart.height)}`}
      width="100%"
      style={{ maxWidth: chart.width, display: "block" }}
    >
      {chart.rows.map((row) => (
        <g key={row.key} data-testid={rowTestId ? rowTestId(row.key) : undefined}>
          <title>{`${row.label}: ${row.valueText}`}</title>
          <text
            x={chart.labelWidth - 8}
            y={row.y + row.barHeight / 2}
            dy="0.32em"
            textAnchor="end"
            fontSize={11}
            fontFamily="ui-monospace, SFMono-Regular, Menlo, monospace"
            fill="currentColor"
          >
            {clip(row.label, labelChars)}
          </text>
          <rect x={row.barX} y={row.y} width={row.barWidth} height={row.barHeight} rx={2} fill={row.fill} />
          <text
            x={row.barX + row.barWidth + 6}
            y={row.y + row.barHeight / 2}
            dy="0.32em"
            fontSize={11}
            fill="currentColor"
          >
            {row.valueText}
          </text>
        </g>
      ))}
    </svg>
  );
}

export function Legend({ items }: { items: { key: string; label: string; fill: string }[] }) {
  return (
    <HStack gap={4} flexWrap="wrap" mt={2}>
      {items.map((item) => (
        <HStack key={item.key} gap={1}>
          <Box as="span" display="inline-block" width="10px" height="10px" borderRadius="2px" style={{ background: item.fill }} />
          <Text fontSize="xs">{item.label}</Text>
        </HStack>
      ))}
    </HStack>
  );
}

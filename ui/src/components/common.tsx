import { Alert, Badge, Box, Heading, Link, Text } from "@chakra-ui/react";
import type { ReactNode } from "react";

import { docsUrl } from "../lib/docs";

export function ErrorBox({ message }: { message: string }) {
  return (
    <Alert.Root status="error" data-testid="resilience-error" my={3}>
      <Alert.Indicator />
      <Alert.Content>
        <Alert.Title>{message}</Alert.Title>
      </Alert.Content>
    </Alert.Root>
  );
}

export function Section({
  title,
  testId,
  aside,
  children,
}: {
  title: string;
  testId?: string;
  aside?: ReactNode;
  children: ReactNode;
}) {
  return (
    <Box data-testid={testId} borderWidth="1px" borderRadius="md" p={3} mt={4}>
      <Box display="flex" alignItems="baseline" justifyContent="space-between" gap={2} mb={2}>
        <Heading as="h3" size="sm">
          {title}
        </Heading>
        {aside}
      </Box>
      {children}
    </Box>
  );
}

export function PaletteBadge({
  palette,
  title,
  testId,
  children,
}: {
  palette: string;
  title?: string;
  testId?: string;
  children: ReactNode;
}) {
  return (
    <Badge colorPalette={palette} variant="subtle" title={title} data-testid={testId}>
      {children}
    </Badge>
  );
}

export function DocsLink({ page }: { page: string }) {
  return (
    <Link href={docsUrl(page)} target="_blank" rel="noreferrer" colorPalette="blue" textDecoration="underline">
      docs/{page}
    </Link>
  );
}

export function Muted({ children, testId }: { children: ReactNode; testId?: string }) {
  return (
    <Text color="fg.muted" fontSize="sm" data-testid={testId}>
      {children}
    </Text>
  );
}

// Where the user-facing links of the bundles point: the project's docs on GitHub (one place to change).
export const DOCS_BASE_URL = "https://github.com/airflow-resilience/airflow-resilience/blob/main/docs/";

export function docsUrl(page: string): string {
  return DOCS_BASE_URL + page.replace(/^\/+/, "");
}

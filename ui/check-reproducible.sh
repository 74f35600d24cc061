#!/usr/bin/env bash
# Checks that the committed bundles (src/airflow_resilience/airflow/ui_dist) are what ui/ builds: a copy of
# ui/ at another path, `npm ci` from package-lock.json, the build into a temp dir, byte-for-byte compare.
# (Another path, so an absolute path in the output would show up as a difference.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dist="$here/../src/airflow_resilience/airflow/ui_dist"
tmp="$(mktemp -d -t resilience-ui-repro.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/ui"
( cd "$here" && cp -R package.json package-lock.json .npmrc tsconfig.json vite.config.ts scripts src "$tmp/ui/" )
( cd "$tmp/ui" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null && node scripts/build.mjs --out-dir "$tmp/out" >/dev/null )

fail=0
built="$(cd "$tmp/out" && ls -1 | sort)"
committed="$(cd "$dist" 2>/dev/null && ls -1 | sort || true)"
if [ "$built" != "$committed" ]; then
    echo "ui_dist has other files than the build makes: built [$(echo $built)], committed [$(echo $committed)]" >&2
    fail=1
fi
for file in $built; do
    if ! cmp -s "$tmp/out/$file" "$dist/$file"; then
        echo "ui_dist/$file differs from a fresh build ($(wc -c <"$tmp/out/$file") bytes built, $( [ -f "$dist/$file" ] && wc -c <"$dist/$file" || echo no) committed)" >&2
        fail=1
    fi
done
if [ "$fail" != 0 ]; then
    echo "The committed bundles are out of date: run make ui and commit src/airflow_resilience/airflow/ui_dist" >&2
    exit 1
fi
echo "ui_dist is reproducible: $(echo $built) match a fresh npm ci + build"

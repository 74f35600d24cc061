// Reads what an installed Airflow UI bundle gives plugins, and writes tests/fixtures/host-globals.json:
// the globals it sets, the React version it carries and the names of its ChakraUI namespace. The bundle
// tests check that every Chakra export the plugin bundles use is one of those names.
//
//   node scripts/host-globals.mjs [path/to/airflow/ui/dist/assets/index-*.js]
// Default: the Airflow of the repository's .venv.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function defaultBundle() {
  const lib = join(root, "../.venv/lib");
  for (const python of readdirSync(lib)) {
    const assets = join(lib, python, "site-packages/airflow/ui/dist/assets");
    try {
      const index = readdirSync(assets).find((name) => /^index-.*\.js$/.test(name));
      if (index) return join(assets, index);
    } catch {
      // not this python
    }
  }
  throw new Error("no Airflow UI bundle under ../.venv: pass its path");
}

const bundlePath = process.argv[2] ?? defaultBundle();
const text = readFileSync(bundlePath, "utf8");

const globals = {};
for (const match of text.matchAll(/Reflect\.set\(globalThis,`(\w+)`,([\w$.]+)\)/g)) globals[match[1]] = match[2];
if (!globals.ChakraUI) throw new Error(`${bundlePath}: no Reflect.set(globalThis, "ChakraUI", ...)`);

// The namespace object: <var>=<helper>({Name:()=>binding,...})
const start = text.indexOf(`${globals.ChakraUI}=`);
const open = text.indexOf("({", start);
let depth = 0;
let end = open + 1;
for (; end < text.length; end++) {
  if (text[end] === "{") depth++;
  else if (text[end] === "}" && --depth === 0) break;
}
const chakraExports = [...text.slice(open + 2, end).matchAll(/(?:^|,)([A-Za-z_$][\w$]*):\(\)=>/g)].map((m) => m[1]);

const reactVersions = [...new Set([...text.matchAll(/\.version=`(19\.[0-9.]+)`/g)].map((m) => m[1]))];

const out = {
  source: "Airflow UI bundle (airflow/ui/dist/assets/index-*.js), read by scripts/host-globals.mjs",
  globals: Object.keys(globals).sort(),
  react: reactVersions,
  chakraExports: chakraExports.sort(),
};
writeFileSync(join(root, "tests/fixtures/host-globals.json"), JSON.stringify(out, null, 2) + "\n");
console.log(`${out.globals.join(", ")}; React ${out.react.join(", ")}; ${out.chakraExports.length} ChakraUI exports`);

// Builds the web app into web/dist: esbuild bundles web/src/main.js (ES
// modules, code splitting: the terminal page and xterm.js are a lazy chunk),
// web/src/styles.css and the lazily loaded web/src/terminal.css into
// web/dist/assets/, and web/public/* is copied to web/dist/. Prints the bytes
// the dashboard's first load needs (entry JS, its static imports, entry CSS).
//
// Usage: node web/build.mjs   (from any directory; exits non-zero on failure)

import { build } from "esbuild";
import { cpSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const web = dirname(fileURLToPath(import.meta.url));
const root = dirname(web);
const dist = join(web, "dist");
const assets = join(dist, "assets");
/** First-load budget (JS + CSS, uncompressed). */
const BUDGET_BYTES = 300 * 1024;

async function main() {
  rmSync(dist, { recursive: true, force: true });
  mkdirSync(assets, { recursive: true });

  const result = await build({
    absWorkingDir: root,
    entryPoints: [
      { in: "web/src/main.js", out: "app" },
      { in: "web/src/styles.css", out: "app" },
      { in: "web/src/terminal.css", out: "terminal" },
    ],
    outdir: assets,
    bundle: true,
    format: "esm",
    splitting: true,
    minify: true,
    target: ["es2022", "chrome109", "firefox115", "safari16"],
    entryNames: "[name]",
    chunkNames: "chunks/[name]-[hash]",
    assetNames: "media/[name]-[hash]",
    metafile: true,
    logLevel: "warning",
    legalComments: "eof",
    charset: "utf8",
  });
  if (result.errors.length) throw new Error("esbuild reported errors");

  cpSync(join(web, "public"), dist, { recursive: true });

  // What the dashboard's first load fetches: the entry script, every chunk it
  // imports statically (transitively) and the entry stylesheet.
  const outputs = result.metafile.outputs;
  const key = (abs) => relative(root, abs).split("\\").join("/");
  const entryJs = key(join(assets, "app.js"));
  const entryCss = key(join(assets, "app.css"));
  const firstLoad = new Set();
  const walk = (file) => {
    if (firstLoad.has(file)) return;
    firstLoad.add(file);
    for (const imp of outputs[file].imports || []) {
      if (imp.kind === "import-statement" && !imp.external) walk(imp.path);
    }
  };
  walk(entryJs);
  firstLoad.add(entryCss);

  let raw = 0;
  let gz = 0;
  const lines = [];
  for (const file of Object.keys(outputs).sort()) {
    const bytes = readFileSync(join(root, file));
    const z = gzipSync(bytes).length;
    const first = firstLoad.has(file);
    if (first) {
      raw += bytes.length;
      gz += z;
    }
    lines.push(`  ${first ? "*" : " "} ${file.padEnd(48)} ${String(bytes.length).padStart(8)} B  ${String(z).padStart(7)} B gzip`);
  }
  console.log("web/dist/assets (* = first load of the dashboard):");
  console.log(lines.join("\n"));
  console.log(`First load (JS + CSS): ${raw} bytes (${(raw / 1024).toFixed(1)} KiB), ${gz} bytes gzipped`);
  if (raw > BUDGET_BYTES) {
    throw new Error(`first load is ${raw} bytes, over the ${BUDGET_BYTES}-byte budget`);
  }
}

main().catch((err) => {
  console.error(`web build failed: ${err.message || err}`);
  process.exit(1);
});

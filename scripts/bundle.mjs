// Bundles the CLI into one CommonJS file, dist/sy.cjs: commander and all of sy's own
// modules. Start-up time is dominated by resolving and loading modules, and CommonJS
// loads faster than ESM on Node 20; modules sy imports lazily stay lazy (esbuild
// initialises them on first import). npm packages other than commander stay external:
// only the commands that use them load them (drivers, prompts, spinners, YAML), and
// better-sqlite3 and keytar are native. ESM-only packages keep their dynamic import().
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

// `sy --help` is rendered here, from tsc's output of the same command tree, so printing it
// needs neither commander nor the tree at run time (80 columns, as when piped).
const { buildProgram } = await import('../dist/cli/program.js');
const program = buildProgram({}, pkg.version);
let rootHelp = '';
program.configureOutput({ writeOut: (text) => (rootHelp += text), getOutHelpWidth: () => 80 });
program.outputHelp();
const external = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.optionalDependencies ?? {})].filter((name) => name !== 'commander');

await build({
  entryPoints: ['src/index.ts'],
  outfile: 'dist/sy.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: [...external, ...external.map((name) => `${name}/*`)],
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
  define: { SY_VERSION: JSON.stringify(pkg.version), SY_ROOT_HELP: JSON.stringify(rootHelp), 'import.meta.url': '__syModuleUrl' },
  banner: { js: "const __syModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});

// Bundles the CLI into one CommonJS file, dist/sy.cjs: commander and all of sy's own
// modules. Start-up time is dominated by resolving and loading modules, and CommonJS
// loads faster than ESM on Node 20; modules sy imports lazily stay lazy (esbuild
// initialises them on first import). npm packages other than commander stay external:
// only the commands that use them load them (drivers, prompts, spinners, YAML), and
// better-sqlite3 and keytar are native. ESM-only packages keep their dynamic import().
//
// The database drivers are bundled too, each into its own file under dist/vendor/ that
// sy.cjs requires only when a target of that engine is used: resolving and reading
// mysql2's ~100 files cost ~17 ms of each MariaDB command, pg's ~30 files ~14 ms.
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
const vendored = { pg: 'pg', mysql2: 'mysql2', jose: 'jose' };
const external = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.optionalDependencies ?? {})].filter(
  (name) => name !== 'commander' && !Object.values(vendored).includes(name),
);

for (const [specifier, name] of Object.entries(vendored)) {
  await build({
    stdin: { contents: `module.exports = require(${JSON.stringify(specifier)});`, resolveDir: process.cwd(), loader: 'js' },
    outfile: `dist/vendor/${name}.cjs`,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    // pg's optional native binding and its Cloudflare Workers socket are never used by sy.
    external: ['pg-native', 'pg-cloudflare'],
    legalComments: 'eof',
    logLevel: 'warning',
  });
}
/**
 * Points sy.cjs's imports of the drivers at the vendored files, required at run time. A
 * dynamic import() (jose's) goes through a one-line shim that require()s the file: import()
 * of a CommonJS file would go through Node's ESM loader, slower than jose's own ESM files.
 */
const vendorPlugin = {
  name: 'vendor',
  setup(build) {
    const filter = new RegExp(`^(${Object.keys(vendored).map((s) => s.replace('/', '\\/')).join('|')})$`);
    const file = (specifier) => `./vendor/${vendored[specifier]}.cjs`;
    build.onResolve({ filter }, (args) => (args.kind === 'dynamic-import' ? { path: args.path, namespace: 'vendor-shim' } : { path: file(args.path), external: true }));
    build.onLoad({ filter: /.*/, namespace: 'vendor-shim' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(file(args.path))});`, loader: 'js' }));
    build.onResolve({ filter: /^\.\/vendor\//, namespace: 'vendor-shim' }, (args) => ({ path: args.path, external: true }));
  },
};

await build({
  entryPoints: ['src/index.ts'],
  outfile: 'dist/sy.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: [...external, ...external.map((name) => `${name}/*`)],
  plugins: [vendorPlugin],
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
  define: { SY_VERSION: JSON.stringify(pkg.version), SY_ROOT_HELP: JSON.stringify(rootHelp), 'import.meta.url': '__syModuleUrl' },
  banner: { js: "const __syModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
});

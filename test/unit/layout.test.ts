import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/**
 * The layout the README's "Developing" section describes, checked: the model imports
 * nothing of sy's, nothing below the CLI reaches up into it, and there are no import
 * circles, type-only imports included.
 */
const SRC = resolve('src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every relative import of a file, static, dynamic or type-only, as a path under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found = new Set<string>();
  for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)\.js'/g)) {
    found.add(relative(SRC, resolve(dirname(file), `${match[1]}.ts`)));
  }
  return [...found];
}

const graph = new Map(sourceFiles(SRC).map((file) => [relative(SRC, file), importsOf(file)]));
const folder = (module: string): string => (module.includes('/') ? module.split('/')[0] : module.replace(/\.ts$/, ''));

describe('source layout', () => {
  test('every import names a file that exists', () => {
    const missing = [...graph].flatMap(([from, to]) => to.filter((m) => !graph.has(m)).map((m) => `${from} -> ${m}`));
    expect(missing).toEqual([]);
  });

  test('model/ imports nothing outside itself', () => {
    const outside = [...graph]
      .filter(([from]) => folder(from) === 'model')
      .flatMap(([from, to]) => to.filter((m) => folder(m) !== 'model').map((m) => `${from} -> ${m}`));
    expect(outside).toEqual([]);
  });

  // What each folder may import: the rule the README's "Developing" section states, one
  // line per folder. `errors` is src/errors.ts; a folder always may import itself.
  const MAY_IMPORT: Record<string, string[]> = {
    model: [],
    errors: [],
    util: ['errors'],
    keys: ['errors', 'util'],
    audit: ['errors', 'util'],
    targets: ['errors', 'util', 'model'],
    store: ['errors', 'util', 'model', 'keys', 'audit'],
    secrets: ['errors', 'util', 'model', 'store', 'targets', 'audit'],
    leases: ['errors', 'util', 'model', 'store', 'targets', 'audit', 'secrets'],
    clients: ['errors', 'util', 'model', 'keys', 'audit', 'store', 'secrets', 'leases'],
    io: ['errors', 'util', 'model', 'keys', 'leases'],
    config: ['errors', 'util', 'io'],
    commands: ['errors', 'util', 'model', 'keys', 'audit', 'targets', 'store', 'secrets', 'leases', 'clients', 'client', 'agent', 'io', 'config', 'cli'],
    cli: ['errors', 'util', 'model', 'keys', 'audit', 'targets', 'store', 'secrets', 'leases', 'io', 'config', 'commands', 'client', 'agent', 'daemon'],
    index: ['errors', 'io', 'cli'],
    // The seam of issue 17: the LeaseService a command takes, local or over the API.
    client: ['errors', 'util', 'model', 'io', 'store', 'secrets', 'leases', 'clients'],
    // `sy daemon`: the revocation loop, its observers and the API server beside it; a command's peer.
    daemon: ['errors', 'util', 'model', 'keys', 'audit', 'targets', 'store', 'secrets', 'leases', 'clients', 'io', 'cli'],
    // `sy agent`'s loop, its events and the session probe, on a LeaseService.
    agent: ['errors', 'util', 'model', 'io', 'client'],
    types: [],
  };

  test('each folder imports only the folders below it', () => {
    const bad = [...graph].flatMap(([from, to]) => {
      const allowed = MAY_IMPORT[folder(from)];
      if (!allowed) return [`${from}: a folder the layout does not name`];
      return to.filter((m) => folder(m) !== folder(from) && !allowed.includes(folder(m))).map((m) => `${from} -> ${m}`);
    });
    expect(bad).toEqual([]);
  });

  test('domain code never writes to the process streams', () => {
    const domain = new Set(['model', 'secrets', 'store', 'targets', 'leases', 'audit', 'keys']);
    const writers = [...graph.keys()]
      .filter((file) => domain.has(folder(file)))
      .filter((file) => /process\.(stdout|stderr)/.test(readFileSync(join(SRC, file), 'utf8')));
    expect(writers).toEqual([]);
  });

  test('there are no import circles', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (node: string, path: string[]): void => {
      if (state.get(node) === 'done') return;
      if (state.get(node) === 'open') {
        cycles.push([...path.slice(path.indexOf(node)), node].join(' -> '));
        return;
      }
      state.set(node, 'open');
      for (const next of graph.get(node) ?? []) visit(next, [...path, node]);
      state.set(node, 'done');
    };
    for (const node of graph.keys()) visit(node, []);
    expect(cycles).toEqual([]);
  });
});

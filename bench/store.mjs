// How the bench scripts open a store through sy's own store layer (tsc's output in dist/),
// SQLite in SY_HOME or PostgreSQL in SY_STORE, and write many records fast.
const dist = (file) => new URL(`../dist/${file}`, import.meta.url).href;

/** The store the environment names, opened with its key. */
export async function openBenchStore(env = process.env) {
  const { openStore } = await import(dist('store/open.js'));
  return openStore(() => env.SY_HOME ?? '', env, { actor: env.SY_CLIENT_ID ?? 'bench', warn: (text) => process.stderr.write(`${text}\n`) });
}

/**
 * Runs `jobs` (each `(store) => Promise`). On SQLite they run as one transaction: each
 * recordIntent or transition is otherwise its own commit with an fsync, and the
 * repositories do their work synchronously before they return, so calls made inside
 * better-sqlite3's transaction become savepoints of it (the store's handle is private to
 * TypeScript only). A PostgreSQL store has no such shortcut: the jobs run one per handle at
 * a time, on every handle given.
 */
export async function inBatch(stores, jobs) {
  const [store] = stores;
  if (store.kind === 'sqlite') {
    const pending = [];
    store.db.transaction(() => {
      for (const job of jobs) pending.push(job(store));
    }).immediate();
    await Promise.all(pending);
    return;
  }
  let next = 0;
  await Promise.all(stores.map(async (handle) => {
    while (next < jobs.length) await jobs[next++](handle);
  }));
}

/**
 * The OS keychain for real: a fresh gnome-keyring on a private D-Bus session bus
 * (dbus-run-session), as in CI. Nothing here is skipped: a machine without the keyring
 * packages or without a built keytar fails with a message saying what to install.
 */
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, SY_BIN, runSy } from '../helpers/cli.js';

const PASSWORD = 'Sup3r-S3cret-Value!';

/** Fails (never skips) when the machine cannot run a headless Secret Service. */
async function checkPrerequisites(): Promise<void> {
  const keytar = await execa('node', ['--input-type=module', '-e', "await import('keytar')"], { cwd: ROOT, reject: false });
  if (keytar.exitCode !== 0) {
    throw new Error(
      `keytar did not build or does not load, so sy has no OS keychain: libsecret-1-dev is missing. ` +
        `Install it (apt-get install libsecret-1-dev) and run \`npm rebuild keytar\`.\n${keytar.stderr}`,
    );
  }
  for (const [tool, pkg] of [['dbus-run-session', 'dbus'], ['gnome-keyring-daemon', 'gnome-keyring']]) {
    const found = await execa('sh', ['-c', `command -v ${tool}`], { reject: false });
    if (found.exitCode !== 0) throw new Error(`${tool} is missing: install the Debian package ${pkg} (CI installs gnome-keyring, dbus and libsecret-1-dev).`);
  }
}

interface Step {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Each step is a separate sy process, all on one session bus with one unlocked keyring. */
const SCRIPT = `set -u
mkdir -p "$XDG_DATA_HOME" "$OUT"
eval "$(printf '%s' "$KEYRING_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL
step() {
  name=$1; shift
  "$SY_BIN" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" </dev/null
  echo $? >"$OUT/$name.rc"
}
export SY_HOME="$BASE/explicit"
step init init --quiet --key-source keychain
step create secret create app:kc --data @"$BASE/data.json"
step read secret read app:kc
export SY_HOME="$BASE/default"
step init-default init --quiet
step create-default secret create app:kc2 --data '{"k": "v"}'
step read-default secret read app:kc2
`;

describe('the OS keychain (gnome-keyring on a private D-Bus session)', () => {
  let base: string;
  const steps: Record<string, Step> = {};
  const storeEnv = (name: string) => ({ SY_HOME: join(base, name), HOME: base, SY_NO_SWEEP: '1' });

  beforeAll(async () => {
    await checkPrerequisites();
    base = mkdtempSync(join(tmpdir(), 'sy-keychain-'));
    const runtime = join(base, 'run');
    mkdirSync(runtime, { mode: 0o700 });
    chmodSync(runtime, 0o700);
    writeFileSync(join(base, 'data.json'), JSON.stringify({ password: PASSWORD, user: 'kc' }));
    writeFileSync(join(base, 'script.sh'), SCRIPT);
    const session = await execa('dbus-run-session', ['--', 'sh', join(base, 'script.sh')], {
      // No SY_MASTER_KEY, SY_MASTER_KEY_FILE or SY_PASSPHRASE: only the keychain can hold the key.
      env: {
        PATH: process.env.PATH,
        HOME: base,
        XDG_DATA_HOME: join(base, 'data'),
        XDG_CONFIG_HOME: join(base, 'config'),
        XDG_CACHE_HOME: join(base, 'cache'),
        XDG_RUNTIME_DIR: runtime,
        KEYRING_PASSWORD: 'keyring-pw',
        SY_BIN,
        SY_NO_SWEEP: '1',
        BASE: base,
        OUT: join(base, 'out'),
      },
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: 90_000,
    });
    if (session.exitCode !== 0) throw new Error(`dbus-run-session failed (${session.exitCode}): ${session.stderr}`);
    const out = join(base, 'out');
    for (const name of readdirSync(out).filter((f) => f.endsWith('.rc')).map((f) => f.slice(0, -3))) {
      steps[name] = {
        exitCode: Number(readFileSync(join(out, `${name}.rc`), 'utf8')),
        stdout: readFileSync(join(out, `${name}.out`), 'utf8'),
        stderr: readFileSync(join(out, `${name}.err`), 'utf8'),
      };
    }
  });

  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  const succeeded = (name: string): any => {
    expect({ name, exitCode: steps[name]?.exitCode, stderr: steps[name]?.stderr }).toEqual({ name, exitCode: 0, stderr: '' });
    return JSON.parse(steps[name].stdout);
  };

  test('sy init --key-source keychain keeps the key in the keychain, and a fresh process reads the secret back', () => {
    expect(succeeded('init')).toMatchObject({ key_source: expect.stringMatching(/keychain/i) });
    expect(succeeded('create')).toMatchObject({ path: 'app:kc', version: 1 });
    expect(succeeded('read')).toMatchObject({ path: 'app:kc', data: { password: PASSWORD, user: 'kc' } });
  });

  test('without --key-source and without key variables, sy init picks the OS keychain', () => {
    expect(succeeded('init-default')).toMatchObject({ key_source: 'the OS keychain' });
    succeeded('create-default');
    expect(succeeded('read-default').data).toEqual({ k: 'v' });
  });

  test('the store records a keychain-wrapped key and holds neither the key nor the data in clear', () => {
    const file = join(base, 'explicit', 'sy.db');
    const db = new Database(file);
    const slot = JSON.parse((db.prepare("SELECT value FROM meta WHERE key = 'keyslot'").get() as { value: string }).value);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    expect(slot.wrap).toEqual({ type: 'key', keychain: true });
    expect(readFileSync(file).indexOf(PASSWORD)).toBe(-1);
  });

  test('outside the D-Bus session the keychain is unreachable: exit 4 naming SY_MASTER_KEY', async () => {
    const result = await runSy(['secret', 'read', 'app:kc'], storeEnv('explicit'), { timeout: 30_000 });
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(result.stderr).toMatch(/^sy: /);
    expect(result.stderr).toMatch(/SY_MASTER_KEY/);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stderr).not.toContain(PASSWORD);
  });

  test('outside the D-Bus session sy init --key-source keychain exits 4 and creates no store', async () => {
    const result = await runSy(['init', '--key-source', 'keychain'], storeEnv('none'), { timeout: 30_000 });
    expect({ exitCode: result.exitCode, stdout: result.stdout }).toEqual({ exitCode: 4, stdout: '' });
    expect(result.stderr).toMatch(/keychain/i);
    expect(result.stderr).toMatch(/SY_MASTER_KEY/);
    let files: string[] = [];
    try {
      files = readdirSync(join(base, 'none'));
    } catch {
      // No SY_HOME at all is fine too.
    }
    expect(files.filter((f) => f.startsWith('sy.db'))).toEqual([]);
  });
});

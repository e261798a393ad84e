/**
 * Shell completion through the real shells and the built bin/sy: the committed bash script
 * completes commands, flags, flag values and, through `sy __complete`, the secret paths and
 * lease ids of a real store (leases made on the machine's PostgreSQL, 127.0.0.1:5432, user
 * postgres, trust auth); completion stays silent without a store and never sweeps; the zsh
 * and fish scripts load in their shells; `sy completion <shell>` prints the committed files.
 */
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeHome, ROOT, type SyHome } from '../helpers/cli.js';

const BASH_SCRIPT = join(ROOT, 'completions/sy.bash');
const ZSH_SCRIPT = join(ROOT, 'completions/_sy');
const FISH_SCRIPT = join(ROOT, 'completions/sy.fish');
const PATH = `${join(ROOT, 'bin')}:${process.env.PATH}`;

/**
 * Calls the completion function the way bash does after <TAB> at the end of `line`:
 * COMP_WORDS split at blanks and at bash's word breaks (':' and '=' among them).
 */
const BASH_DRIVER = `
source "$1" || exit 99
COMP_LINE="$2"
COMP_POINT=\${#COMP_LINE}
shift 2
COMP_WORDS=("$@")
COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
_sy
status=$?
for reply in "\${COMPREPLY[@]}"; do printf '%s\\n' "$reply"; done
exit $status
`;

function compWords(line: string): string[] {
  const words = line
    .trim()
    .split(/\s+/)
    .flatMap((word) => word.split(/([:=])/))
    .filter((word) => word !== '');
  return /\s$/.test(line) ? [...words, ''] : words;
}

interface Completion {
  replies: string[];
  stderr: string;
}

async function complete(line: string, env: Record<string, string | undefined>): Promise<Completion> {
  const result = await execa('bash', ['--norc', '--noprofile', '-c', BASH_DRIVER, 'bash', BASH_SCRIPT, line, ...compWords(line)], {
    env: { PATH, ...env },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
  });
  if (result.exitCode !== 0) throw new Error(`completing "${line}" exited ${result.exitCode}: ${result.stderr}`);
  return { replies: result.stdout === '' ? [] : result.stdout.split('\n'), stderr: result.stderr };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let sy: SyHome;
/** The environment of that store without SY_NO_SWEEP: the scripts must turn the sweep off themselves. */
let storeEnv: Record<string, string | undefined>;
let lease: { lease_id: string };
let shortLease: { lease_id: string; expires_at: string };

beforeAll(async () => {
  sy = await makeHome();
  storeEnv = { ...sy.env, SY_NO_SWEEP: undefined };
  await sy.json(['secret', 'create', 'app:config', '--data', '{"greeting": "hello"}']);
  await sy.json([
    'secret', 'create', 'db:postgresql:root',
    '--attributes', '{"type": "postgresql"}',
    '--data', JSON.stringify({ host: '127.0.0.1', port: 5432, username: 'postgres', password: 'x', database: 'postgres' }),
  ]);
  await sy.json([
    'secret', 'create', 'db:postgresql:dyn1',
    '--attributes', JSON.stringify({
      linkConfig: { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' },
      grantPermissions: { what: 'SELECT', where: '*.*' },
      ttl: 600,
    }),
  ]);
  lease = await sy.json(['dynamic', 'lease', 'create', '--path', 'db:postgresql:dyn1']);
  // Expires almost at once; nothing sweeps it because every command here runs with SY_NO_SWEEP=1.
  shortLease = await sy.json(['dynamic', 'lease', 'create', '--path', 'db:postgresql:dyn1', '--ttl', '1']);
});

afterAll(async () => {
  if (!sy) return;
  // Drop the users made on the machine's PostgreSQL.
  const revoked = await sy.run(['dynamic', 'lease', 'revoke', '--prefix', 'db:postgresql', '--yes']);
  sy.cleanup();
  if (revoked.exitCode !== 0) throw new Error(`revoking the test leases failed: ${revoked.stderr}`);
});

describe('bash completion', () => {
  it('completes commands and subcommands at every level', async () => {
    expect((await complete('sy dyn', storeEnv)).replies).toEqual(['dynamic']);
    expect((await complete('sy dynamic lease re', storeEnv)).replies).toEqual(['renew', 'revoke']);
    expect((await complete('sy secret ', storeEnv)).replies).toEqual(['create', 'read', 'describe', 'update', 'delete', 'rollback', 'search']);
    // Global flags before the command do not get in the way.
    expect((await complete('sy --debug secret de', storeEnv)).replies).toEqual(['describe', 'delete']);
    expect((await complete('sy ', storeEnv)).replies).not.toContain('__complete');
  });

  it("completes each command's flags and the values of flags with fixed choices", async () => {
    expect((await complete('sy secret read --fo', storeEnv)).replies).toEqual(['--format']);
    expect((await complete('sy dynamic lease revoke --', storeEnv)).replies).toEqual(expect.arrayContaining(['--prefix', '--force', '--yes', '--no-sweep', '--help']));
    expect((await complete('sy secret read --format ', storeEnv)).replies).toEqual(['json', 'yaml', 'table', 'env', 'dotenv']);
    expect((await complete('sy secret read -f t', storeEnv)).replies).toEqual(['table']);
    expect((await complete('sy secret read --format=y', storeEnv)).replies).toEqual(['yaml']);
    expect((await complete('sy init --key-source pass', storeEnv)).replies).toEqual(['passphrase']);
    expect((await complete('sy completion ', storeEnv)).replies).toEqual(['bash', 'zsh', 'fish']);
  });

  it('completes secret paths from the store, for arguments and for --path, --query and --prefix', async () => {
    const all = ['app:config', 'db:postgresql:dyn1', 'db:postgresql:root'];
    expect((await complete('sy secret read ', storeEnv)).replies.sort()).toEqual(all);
    expect((await complete('sy secret describe --path ', storeEnv)).replies.sort()).toEqual(all);
    expect((await complete('sy secret search --query a', storeEnv)).replies).toEqual(['app:config']);
    expect((await complete('sy dynamic lease revoke --prefix d', storeEnv)).replies.sort()).toEqual(['db:postgresql:dyn1', 'db:postgresql:root']);
    // bash replaces only what follows the last ':' of the word, so that is what is offered.
    expect((await complete('sy secret read db:postgresql:d', storeEnv)).replies).toEqual(['dyn1']);
    expect((await complete('sy dynamic lease create --path=db:postgresql:r', storeEnv)).replies).toEqual(['root']);
  });

  it('completes the ids of active leases, without sweeping the expired one', async () => {
    // expires_at is printed to the second: the lease really expires within the second after.
    const wait = Date.parse(shortLease.expires_at) + 1200 - Date.now();
    if (wait > 0) await sleep(wait);
    const { replies, stderr } = await complete('sy dynamic lease revoke ', storeEnv);
    expect(replies.sort()).toEqual([lease.lease_id, shortLease.lease_id].sort());
    expect(stderr).toBe('');
    expect((await complete(`sy dynamic lease lookup ${lease.lease_id.slice(0, 8)}`, storeEnv)).replies).toEqual([lease.lease_id]);
    // Completing ran sy twice in a store with an expired lease: it is still there, unrevoked.
    const listed = await sy.json<{ data: { lease_id: string; state: string }[] }>(['dynamic', 'lease', 'list', '--format', 'json']);
    expect(listed.data.find((row) => row.lease_id === shortLease.lease_id)?.state).toBe('active');
  });

  it('offers nothing and prints nothing when the store cannot be opened', async () => {
    const cases: Record<string, Record<string, string | undefined>> = {
      'no store': { ...storeEnv, SY_HOME: join(sy.home, 'nowhere') },
      'no key': { ...storeEnv, SY_MASTER_KEY: undefined },
      'a wrong key': { ...storeEnv, SY_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') },
    };
    for (const [name, env] of Object.entries(cases)) {
      const started = Date.now();
      expect({ name, ...(await complete('sy secret read ', env)) }).toEqual({ name, replies: [], stderr: '' });
      expect(Date.now() - started).toBeLessThan(5000);
      const direct = await execa(join(ROOT, 'bin/sy'), ['__complete', 'leases'], { env: { PATH, ...env }, extendEnv: false, reject: false, stdin: 'ignore' });
      expect({ name, exitCode: direct.exitCode, stdout: direct.stdout, stderr: direct.stderr }).toEqual({ name, exitCode: 0, stdout: '', stderr: '' });
    }
  });
});

describe('sy completion <shell>', () => {
  it.each([
    ['bash', BASH_SCRIPT],
    ['zsh', ZSH_SCRIPT],
    ['fish', FISH_SCRIPT],
  ])('sy completion %s prints the committed %s', async (shell, file) => {
    const result = await sy.run(['completion', shell]);
    expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: 0, stderr: '' });
    expect(`${result.stdout}\n`).toBe(readFileSync(file, 'utf8'));
  });

  it('refuses an unknown shell with a usage error', async () => {
    const result = await sy.run(['completion', 'tcsh']);
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/bash, zsh, fish/);
  });
});

async function shell(command: string, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  try {
    const result = await execa(command, args, { cwd: ROOT, env: { PATH, HOME: sy.home, ...sy.env }, extendEnv: false, reject: false, stdin: 'ignore', timeout: 30_000 });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
  } catch (error) {
    throw new Error(`${command} is needed for this test (apt-get install zsh fish): ${(error as Error).message}`);
  }
}

describe('zsh and fish scripts', () => {
  it('the zsh script loads after compinit and registers _sy for sy', async () => {
    const result = await shell('zsh', ['-f', '-c', 'autoload -U compinit; compinit -u -D; source completions/_sy && print -r -- $_comps[sy]']);
    expect(result).toEqual({ exitCode: 0, stdout: '_sy', stderr: '' });
  });

  it('the fish script loads, and completes subcommands, flag values and secret paths', async () => {
    const load = await shell('fish', ['--no-config', '-c', 'source completions/sy.fish']);
    expect(load).toEqual({ exitCode: 0, stdout: '', stderr: '' });
    const candidates = async (line: string) => {
      const result = await shell('fish', ['--no-config', '-c', 'source completions/sy.fish; complete -C $argv[1]', line]);
      expect(result.stderr).toBe('');
      return result.stdout.split('\n').map((row) => row.split('\t')[0]).filter((word) => word !== '');
    };
    expect(await candidates('sy dynamic lease re')).toEqual(['renew', 'revoke']);
    expect((await candidates('sy secret read --format ')).sort()).toEqual(['dotenv', 'env', 'json', 'table', 'yaml']);
    expect((await candidates('sy secret read ')).sort()).toEqual(['app:config', 'db:postgresql:dyn1', 'db:postgresql:root']);
  });
});

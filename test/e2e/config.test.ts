import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeHome, type SyHome } from '../helpers/cli.js';

describe('sy config: non-secret preferences kept with conf', () => {
  let sy: SyHome;
  let configHome: string;
  const env = () => ({ XDG_CONFIG_HOME: configHome });

  beforeAll(async () => {
    sy = await makeHome();
    configHome = mkdtempSync(join(tmpdir(), 'sy-config-'));
  });
  afterAll(() => {
    sy.cleanup();
    rmSync(configHome, { recursive: true, force: true });
  });

  it('sets, gets, lists and unsets a setting in $XDG_CONFIG_HOME/sy/settings.json (0600)', async () => {
    const set = await sy.run(['config', 'set', 'format', 'yaml'], { env: env() });
    expect(set.exitCode).toBe(0);
    expect(set.stderr).toContain('Set format to yaml');
    const file = join(configHome, 'sy', 'settings.json');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ format: 'yaml' });
    expect(statSync(file).mode & 0o777).toBe(0o600);

    expect((await sy.run(['config', 'get', 'format'], { env: env() })).stdout).toBe('yaml');
    const list = await sy.json(['config', 'list'], { env: env() });
    expect(list.data).toEqual(expect.arrayContaining([expect.objectContaining({ key: 'format', value: 'yaml' }), expect.objectContaining({ key: 'color', value: null })]));

    expect((await sy.run(['config', 'unset', 'format'], { env: env() })).exitCode).toBe(0);
    expect((await sy.run(['config', 'get', 'format'], { env: env() })).stdout).toBe('');
  });

  it('refuses unknown keys and values with exit 2 and writes nothing', async () => {
    const badKey = await sy.run(['config', 'set', 'password', 'x'], { env: env() });
    expect(badKey.exitCode).toBe(2);
    expect(badKey.stderr).toMatch(/"password" is not a setting/);
    const badValue = await sy.run(['config', 'set', 'format', 'xml'], { env: env() });
    expect(badValue.exitCode).toBe(2);
    expect(badValue.stderr).toMatch(/format must be one of json, yaml, table, env/);
    expect((await sy.run(['config', 'get', 'format'], { env: env() })).stdout).toBe('');
  });

  it('never changes what scripts get: piped output stays JSON whatever the preference', async () => {
    await sy.run(['config', 'set', 'format', 'yaml'], { env: env() });
    const out = await sy.run(['secret', 'search'], { env: env() });
    expect(out.exitCode).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ data: [] });
  });
});

import { SyError } from '../../src/errors.js';
import { pick, render, renderDotenv, renderEnv, shellQuote } from '../../src/io/format.js';
import { parseJsonLeniently } from '../../src/io/input.js';
import { humanDuration, parseDuration } from '../../src/util/duration.js';

describe('durations', () => {
  it.each([
    ['3600', 3600],
    ['90s', 90],
    ['15m', 900],
    ['1h30m', 5400],
    ['1d', 86400],
  ])('parses %s', (text, seconds) => expect(parseDuration(text, '--ttl')).toBe(seconds));
  it.each(['', '0', '-5', '1x', '1.5h', 'h'])('refuses %j with exit 2', (text) => {
    expect(() => parseDuration(text, '--ttl')).toThrow(SyError);
  });
  it('prints durations as people read them', () => {
    expect(humanDuration(3598)).toBe('59m 58s');
    expect(humanDuration(90061)).toBe('1d 1h 1m 1s');
    expect(humanDuration(0)).toBe('0s');
  });
});

describe('lenient JSON', () => {
  it('forgives trailing commas outside strings only', () => {
    expect(parseJsonLeniently('{"a": [1, 2,], "b": "x,}",\n}', '--data')).toEqual({ a: [1, 2], b: 'x,}' });
  });
  it('reports a position but never the input', () => {
    try {
      parseJsonLeniently('{"password": "Sup3r-S3cret-Value!" oops}', '--data');
      throw new Error('no error');
    } catch (error) {
      expect((error as SyError).exitCode).toBe(2);
      expect((error as Error).message).toMatch(/^The JSON given to --data is malformed near line 1, column \d+\.$/);
      expect((error as Error).message).not.toContain('Sup3r');
    }
  });
});

describe('output formats', () => {
  const value = { id: 'x', data: { password: "it's", port: 5432 } };
  it('renders json, yaml, table, env and dotenv', async () => {
    expect(JSON.parse(await render({ value }, { format: 'json', toTerminal: false }))).toEqual(value);
    expect(await render({ value }, { format: 'yaml', toTerminal: false })).toContain('password: it\'s');
    expect(await render({ value }, { format: 'table', toTerminal: false })).toMatch(/^KEY\s+VALUE\nid\s+x\ndata\.password\s+it's\ndata\.port\s+5432\n$/);
    expect(await render({ value }, { format: 'env', toTerminal: false })).toBe("export ID='x'\nexport DATA_PASSWORD='it'\\''s'\nexport DATA_PORT='5432'\n");
    expect(await render({ value }, { format: 'dotenv', toTerminal: false })).toBe("ID=x\nDATA_PASSWORD=it's\nDATA_PORT=5432\n");
  });
  it('defaults to table on a terminal and json elsewhere', async () => {
    expect(await render({ value }, { toTerminal: true })).toMatch(/^KEY/);
    expect(await render({ value }, { toTerminal: false })).toMatch(/^\{/);
  });
  it('filters one raw value', async () => {
    expect(await render({ value }, { filter: 'data.password', toTerminal: false })).toBe("it's\n");
    expect(pick({ data: [{ path: 'a' }] }, 'data[0].path')).toBe('a');
    expect(() => pick(value, 'data.nope')).toThrow(/no field "data.nope"/);
  });
  it('takes `data.password` on a lease, which is flat, as the help says', async () => {
    const lease = { lease_id: 'l1', username: 'u', password: 'pw' };
    expect(await render({ value: lease }, { filter: 'data.password', toTerminal: false })).toBe('pw\n');
    expect(await render({ value: lease }, { filter: 'password', toTerminal: false })).toBe('pw\n');
    expect(() => pick(lease, 'data.nope')).toThrow(/no field "data.nope"/);
    expect(() => pick(lease, 'data')).toThrow(/no field "data"/);
  });
  it('quotes env values so a shell reads them back exactly', () => {
    expect(shellQuote('plain-value_1')).toBe("'plain-value_1'");
    expect(renderEnv({ A: 'a b$c`d\'e' })).toBe("export A='a b$c`d'\\''e'\n");
  });
  it('writes dotenv values as they are, and refuses a line break', () => {
    expect(renderDotenv({ A: `p#w!%*+-.:=?@^_~'"` })).toBe(`A=p#w!%*+-.:=?@^_~'"\n`);
    expect(() => renderDotenv({ A: 'x\ny' })).toThrow(/^The value of A has a line break/);
    expect(() => renderDotenv({ A: 'x\ry' })).toThrow(/line break/);
  });
});

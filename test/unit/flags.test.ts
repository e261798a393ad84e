import { dynamicSecretRef, keySource, pathArgument, recordUid, secretArgument, secretVersion, seconds, wholeNumber } from '../../src/cli/flags.js';
import { usageMessage } from '../helpers/errors.js';

const ID = '0E4A1B2C-3D4E-4F50-8A6B-7C8D9E0F1A2B';

describe('flag parsers', () => {
  it('read durations as seconds, naming the flag when they cannot', () => {
    expect(seconds('1h30m', '--ttl')).toBe(5400);
    expect(seconds('90', '--increment')).toBe(90);
    expect(seconds(undefined, '--ttl')).toBeUndefined();
    expect(usageMessage(() => seconds('soon', '--interval'))).toBe(
      '--interval "soon" is not a duration: use seconds (3600) or a duration such as 90s, 15m or 1h30m.',
    );
    expect(usageMessage(() => seconds('0', '--ttl'))).toMatch(/^--ttl "0" is not a duration/);
  });

  it('read whole numbers within their range', () => {
    expect(wholeNumber('0', '--offset', { min: 0 })).toBe(0);
    expect(wholeNumber('1000', '--limit', { min: 1, max: 1000 })).toBe(1000);
    expect(wholeNumber(undefined, '--limit', { min: 1 })).toBeUndefined();
    for (const text of ['', '0', '-1', '1.5', '1e2', ' 5', 'ten']) {
      expect(usageMessage(() => wholeNumber(text, '--limit', { min: 1 }))).toBe('--limit must be a whole number of 1 or more.');
    }
    expect(usageMessage(() => wholeNumber('1001', '--limit', { min: 1, max: 1000 }))).toBe('--limit must be a whole number between 1 and 1000.');
    expect(usageMessage(() => wholeNumber('0', '--limit', { min: 1, max: 1000 }))).toBe('--limit must be a whole number between 1 and 1000.');
  });

  it('read a secret version from 1', () => {
    expect(secretVersion('3')).toBe(3);
    expect(secretVersion(undefined)).toBeUndefined();
    expect(usageMessage(() => secretVersion('latest'))).toBe('--version must be a whole number of 1 or more.');
    expect(usageMessage(() => secretVersion('0'))).toBe('--version must be a whole number of 1 or more.');
  });

  it('name a dynamic secret by exactly one of --record-uid and --path', () => {
    expect(dynamicSecretRef({ recordUid: ID })).toEqual({ id: ID.toLowerCase() });
    expect(dynamicSecretRef({ path: 'db/postgresql/dyn' })).toEqual({ path: 'db:postgresql:dyn' });
    const neither = 'Name the dynamic secret with exactly one of --record-uid or --path.';
    expect(usageMessage(() => dynamicSecretRef({}))).toBe(neither);
    expect(usageMessage(() => dynamicSecretRef({ recordUid: ID, path: 'db:x' }))).toBe(neither);
    expect(usageMessage(() => dynamicSecretRef({ recordUid: 'db:x' }))).toBe('--record-uid must be the id (a UUID) of a dynamic secret.');
    expect(recordUid(undefined)).toBeUndefined();
  });

  it('take a secret path as an argument or with --path, once', () => {
    expect(secretArgument('db/pg/root', undefined)).toEqual({ path: 'db:pg:root' });
    expect(secretArgument(undefined, ID)).toEqual({ id: ID.toLowerCase() });
    expect(pathArgument('a', 'a')).toBe('a');
    expect(pathArgument(undefined, undefined, false)).toBeUndefined();
    expect(usageMessage(() => pathArgument('a', 'b'))).toBe('Give the path once: as an argument or with --path, not both.');
    expect(usageMessage(() => secretArgument(undefined, undefined))).toBe('A secret path is required (as an argument or with --path).');
  });

  it('read a key source', () => {
    expect(keySource('keychain', '--to')).toBe('keychain');
    expect(keySource(undefined, '--to')).toBeUndefined();
    expect(usageMessage(() => keySource('vault', '--key-source'))).toBe('--key-source must be one of master-key, master-key-file, passphrase, keychain.');
  });
});

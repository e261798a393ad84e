import { usageMessage } from '../helpers/errors.js';
import { commanderSentence } from '../../src/index.js';
import { checkFieldNames, nearestName } from '../../src/secrets/validate.js';

const link = { linkType: 'dynamic', linkedSecret: 'db:postgresql:root' };
const grant = { what: 'SELECT', where: '*.*' };

describe('the nearest known name', () => {
  const known = ['linkConfig', 'grantPermissions', 'ttl', 'maxTtl', 'pool', 'userPrefix'];
  it.each([
    ['tll', 'ttl'],
    ['TTL', 'ttl'],
    ['maxttl', 'maxTtl'],
    ['max_ttl', 'maxTtl'],
    ['pol', 'pool'],
    ['grantPermission', 'grantPermissions'],
    ['usrPrefix', 'userPrefix'],
  ])('%s → %s', (name, hint) => expect(nearestName(name, known)).toBe(hint));
  it.each(['colour', 'x', 'lifetime', 'a'.repeat(200)])('no hint for %s', (name) => expect(nearestName(name, known)).toBeUndefined());
});

describe('names of fields', () => {
  it('accept every documented name', () => {
    const all = { linkConfig: link, grantPermissions: [grant], ttl: 1, maxTtl: 2, pool: 'p', userPrefix: 'u', reassignTo: 'r', creationStatements: 's', revocationStatements: 's' };
    expect(() => checkFieldNames(all, {})).not.toThrow();
    expect(() => checkFieldNames({ type: 'mysql' }, { host: 'h', port: 1, username: 'u', password: 'p', database: 'd', ssl: true })).not.toThrow();
  });
  it('hint at the name meant', () => {
    expect(usageMessage(() => checkFieldNames({ linkConfig: link, grantPermissions: grant, tll: 600 }, {}))).toBe('attributes.tll is not an attribute of a dynamic secret; did you mean ttl?');
    expect(usageMessage(() => checkFieldNames({ linkConfig: { ...link, linkTyp: 'x' }, grantPermissions: grant }, {}))).toMatch(/^attributes\.linkConfig\.linkTyp .*did you mean linkType\?$/);
    expect(usageMessage(() => checkFieldNames({ linkConfig: link, grantPermissions: { ...grant, waht: 'x' } }, {}))).toMatch(/^attributes\.grantPermissions\.waht .*did you mean what\?$/);
    expect(usageMessage(() => checkFieldNames({ type: 'postgresql' }, { host: 'h', prot: 1 }))).toBe('data.prot is not a field of a base secret; did you mean port?');
  });
  it('list the known names when none is near', () => {
    expect(usageMessage(() => checkFieldNames({ type: 'postgresql', owner: 'me' }, {}))).toBe('attributes.owner is not an attribute of a base secret, which has only type.');
  });
  it('leave static secrets free-form but for a misspelt linkConfig or type', () => {
    expect(() => checkFieldNames({ owner: 'me', tape: 'x', types: ['a'], ttl: 5 }, {})).not.toThrow();
    expect(usageMessage(() => checkFieldNames({ LinkConfig: link }, {}))).toBe('attributes.LinkConfig would make this a static secret; did you mean linkConfig?');
    expect(usageMessage(() => checkFieldNames({ Type: 'mariadb' }, {}))).toMatch(/did you mean type\?$/);
  });
});

describe("commander's messages", () => {
  it.each([
    ["error: unknown option '--dat'\n(Did you mean --data?)", "Unknown option '--dat'; did you mean --data?"],
    ["error: missing required argument 'lease_id'", "Missing required argument 'lease_id'."],
    ["error: too many arguments for 'create'. Expected 1 argument but got 2.", "Too many arguments for 'create'; expected 1 argument but got 2."],
  ])('%j becomes one sentence', (message, sentence) => expect(commanderSentence(message)).toBe(sentence));
});

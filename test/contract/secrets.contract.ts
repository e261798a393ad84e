import { type Fixture, newSecret, rejection } from './fixture.js';

/** SecretRepository: versions, links, deletes that something depends on, search. */
export function describeSecrets(fx: Fixture): void {
  describe('secrets', () => {
    test('create makes version 1; get finds it by id and by path, with its content', async () => {
      const created = await fx.store.secrets.create(
        newSecret({ path: 'app:one', kind: 'static', description: 'the first', attributes: { team: { name: 'x' } }, data: { password: 'p1', n: 3 } }),
      );
      expect(created).toMatchObject({ path: 'app:one', version: 1, description: 'the first', attributes: { team: { name: 'x' } }, data: { password: 'p1', n: 3 } });
      expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(Date.parse(created.created)).not.toBeNaN();
      expect(created.lastModified).toBe(created.created);
      expect(await fx.store.secrets.get({ id: created.id })).toEqual(created);
      expect(await fx.store.secrets.get({ path: 'app:one' })).toEqual(created);
      expect(await fx.store.secrets.get({ id: created.id }, 1)).toEqual(created);
    });

    test('get of what is not there is undefined: another path, another id, a version out of range', async () => {
      const created = await fx.staticSecret('app:there');
      expect(await fx.store.secrets.get({ path: 'app:nothere' })).toBeUndefined();
      expect(await fx.store.secrets.get({ id: '00000000-0000-4000-8000-000000000000' })).toBeUndefined();
      expect(await fx.store.secrets.get({ id: created.id }, 0)).toBeUndefined();
      expect(await fx.store.secrets.get({ id: created.id }, 2)).toBeUndefined();
    });

    test('create on a path that is taken is a usage error, and the first secret stays', async () => {
      const first = await fx.staticSecret('app:taken', { v: 1 });
      const error = await rejection(fx.store.secrets.create(newSecret({ path: 'app:taken', kind: 'static', data: { v: 2 } })));
      expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 2, code: 'secret_exists' });
      expect(await fx.store.secrets.get({ path: 'app:taken' })).toEqual(first);
    });

    test('addVersion adds expected + 1 and keeps every earlier version readable', async () => {
      const first = await fx.staticSecret('app:versions', { v: 1 });
      const second = await fx.store.secrets.addVersion(first.id, 1, { description: 'two', attributes: { a: 2 }, data: { v: 2 } });
      expect(second).toMatchObject({ id: first.id, path: 'app:versions', version: 2, description: 'two', attributes: { a: 2 }, data: { v: 2 }, created: first.created });
      const third = await fx.store.secrets.addVersion(first.id, 2, { description: 'three', attributes: {}, data: { v: 3 } });
      expect(third?.version).toBe(3);
      expect(await fx.store.secrets.get({ id: first.id })).toMatchObject({ version: 3, data: { v: 3 } });
      expect(await fx.store.secrets.get({ id: first.id }, 1)).toMatchObject({ version: 1, description: '', data: { v: 1 } });
      expect(await fx.store.secrets.get({ path: 'app:versions' }, 2)).toMatchObject({ version: 2, description: 'two', data: { v: 2 } });
    });

    test('addVersion from a version that is not the current one, or of no secret, is undefined and changes nothing', async () => {
      const first = await fx.staticSecret('app:cas', { v: 1 });
      await fx.store.secrets.addVersion(first.id, 1, { description: '', attributes: {}, data: { v: 2 } });
      expect(await fx.store.secrets.addVersion(first.id, 1, { description: '', attributes: {}, data: { v: 'late' } })).toBeUndefined();
      expect(await fx.store.secrets.addVersion(first.id, 3, { description: '', attributes: {}, data: { v: 'early' } })).toBeUndefined();
      expect(await fx.store.secrets.addVersion('00000000-0000-4000-8000-000000000000', 1, { description: '', attributes: {}, data: {} })).toBeUndefined();
      expect(await fx.store.secrets.get({ id: first.id })).toMatchObject({ version: 2, data: { v: 2 } });
      expect(await fx.store.secrets.get({ id: first.id }, 3)).toBeUndefined();
    });

    test('addVersion moves a dynamic secret\'s link', async () => {
      const { base, dynamic } = await fx.dynamicPair();
      const other = await fx.store.secrets.create(newSecret({ path: 'db:other', kind: 'base', attributes: { type: 'postgresql' } }));
      await fx.store.secrets.addVersion(dynamic.id, 1, { description: '', attributes: { moved: true }, data: {}, linkedPath: other.path });
      expect(await fx.store.secrets.search({ linkedTo: base.path, limit: 10 })).toEqual([]);
      expect((await fx.store.secrets.search({ linkedTo: other.path, limit: 10 })).map((s) => s.id)).toEqual([dynamic.id]);
    });

    test('delete removes the secret and all its versions; deleting what is gone is no error', async () => {
      const secret = await fx.staticSecret('app:gone');
      await fx.store.secrets.addVersion(secret.id, 1, { description: '', attributes: {}, data: { v: 2 } });
      await fx.store.secrets.delete(secret.id, { force: false });
      expect(await fx.store.secrets.get({ id: secret.id })).toBeUndefined();
      expect(await fx.store.secrets.get({ id: secret.id }, 1)).toBeUndefined();
      expect((await fx.store.info()).secretVersions).toBe(0);
      await fx.store.secrets.delete(secret.id, { force: false });
      // The path is free again.
      expect((await fx.staticSecret('app:gone')).version).toBe(1);
    });

    test('delete is refused while dynamic secrets link to a base, unless forced', async () => {
      const { base, dynamic } = await fx.dynamicPair();
      const error = await rejection(fx.store.secrets.delete(base.id, { force: false }));
      expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 2, code: 'secret_in_use' });
      expect(error.message).toContain(dynamic.path);
      expect(await fx.store.secrets.get({ id: base.id })).toBeDefined();
      await fx.store.secrets.delete(base.id, { force: true });
      expect(await fx.store.secrets.get({ id: base.id })).toBeUndefined();
      expect(await fx.store.secrets.get({ id: dynamic.id })).toBeDefined();
    });

    test('delete is refused while a secret, as dynamic secret or as base, has live leases, unless forced', async () => {
      const pair = await fx.dynamicPair();
      const lease = await fx.leaseIn(pair, 'active');
      const error = await rejection(fx.store.secrets.delete(pair.dynamic.id, { force: false }));
      expect({ exitCode: error.exitCode, code: error.code }).toEqual({ exitCode: 2, code: 'secret_in_use' });
      expect(error.message).toMatch(/1 active lease\b/);
      await fx.store.secrets.delete(pair.dynamic.id, { force: true });
      expect(await fx.store.secrets.get({ id: pair.dynamic.id })).toBeUndefined();
      // The base has no links left, but the lease still counts against it.
      expect((await rejection(fx.store.secrets.delete(pair.base.id, { force: false }))).code).toBe('secret_in_use');
      await fx.store.leases.transition(lease.id, ['active'], 'revoked', { endedAt: T1 });
      await fx.store.secrets.delete(pair.base.id, { force: false });
      expect(await fx.store.secrets.get({ id: pair.base.id })).toBeUndefined();
    });

    test('search: by text in the path (any case, % and _ taken literally), ordered by path, limited, without data', async () => {
      for (const path of ['app:beta', 'app:alpha', 'db:gamma', 'app:100%', 'app:1000', 'app:a_b', 'app:axb']) await fx.staticSecret(path);
      const paths = async (query: string | undefined, limit = 50) => (await fx.store.secrets.search({ query, limit })).map((s) => s.path);
      expect(await paths(undefined)).toEqual(['app:1000', 'app:100%', 'app:a_b', 'app:alpha', 'app:axb', 'app:beta', 'db:gamma'].sort());
      expect(await paths('ALPHA')).toEqual(['app:alpha']);
      expect(await paths('0%')).toEqual(['app:100%']);
      expect(await paths('a_b')).toEqual(['app:a_b']);
      expect(await paths('app:', 2)).toEqual((await paths('app:')).slice(0, 2));
      expect(await paths('nothing-like-it')).toEqual([]);
      const [found] = await fx.store.secrets.search({ query: 'beta', limit: 5 });
      expect(found).toMatchObject({ path: 'app:beta', version: 1 });
      expect(found).not.toHaveProperty('data');
    });

    test('search linkedTo: the dynamic secrets of a base, and nothing else', async () => {
      const { base, dynamic } = await fx.dynamicPair();
      await fx.store.secrets.create(newSecret({ path: 'app:static-link', kind: 'static', linkedPath: base.path }));
      const second = await fx.store.secrets.create(newSecret({ path: 'db:dyn-second', kind: 'dynamic', linkedPath: base.path }));
      expect((await fx.store.secrets.search({ linkedTo: base.path, limit: 10 })).map((s) => s.id).sort()).toEqual([dynamic.id, second.id].sort());
      expect(await fx.store.secrets.search({ linkedTo: 'db:nobody', limit: 10 })).toEqual([]);
      expect(await fx.store.secrets.search({ linkedTo: base.path, limit: 1 })).toHaveLength(1);
    });
  });
}

/** An instant after every lease the suite makes has been created. */
const T1 = Date.now() + 3600_000;

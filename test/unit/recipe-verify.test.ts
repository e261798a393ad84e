import { failed, usageError } from '../../src/errors.js';
import { checkRecipeOnServer, type RecipeServer } from '../../src/secrets/verify.js';
import type { BaseConnection, DynamicRecipe } from '../../src/model/secret.js';
import type { Target } from '../../src/targets/target.js';

const connection: BaseConnection = { engine: 'postgresql', host: 'db.example', port: 5432, username: 'admin', password: 'pw' };
const recipe: DynamicRecipe = { basePath: 'db:pg:root', grants: [{ privileges: ['SELECT'], schema: 'app', table: 'items' }], ttl: 60, maxTtl: 600, pool: 'default', connectionLimit: 10 };

/** A connector whose target answers `problems` (or throws `error`) and records what it was asked. */
function fakeServer(answer: { problems?: string[]; connectError?: Error; checkError?: Error } = {}) {
  const calls = { connects: [] as number[], checks: [] as unknown[][], closes: 0 };
  const server: RecipeServer = {
    connectTimeoutMs: 1234,
    async connect(_connection, options) {
      calls.connects.push(options.connectTimeoutMs);
      if (answer.connectError) throw answer.connectError;
      return {
        async checkRecipe(grants, opts) {
          calls.checks.push([grants, opts]);
          if (answer.checkError) throw answer.checkError;
          return answer.problems ?? [];
        },
        async close() {
          calls.closes++;
        },
      } as Partial<Target> as Target;
    },
  };
  return { server, calls };
}

describe('checkRecipeOnServer', () => {
  test("passes the recipe's grants and reassignTo, with the connector's timeout, and closes the connection", async () => {
    const { server, calls } = fakeServer({ problems: ['grantPermissions: table app.items does not exist on db.example:5432/postgres.'] });
    expect(await checkRecipeOnServer(server, connection, { ...recipe, reassignTo: 'graveyard' })).toEqual({
      checked: true,
      problems: ['grantPermissions: table app.items does not exist on db.example:5432/postgres.'],
    });
    expect(calls).toEqual({ connects: [1234], checks: [[recipe.grants, { reassignTo: 'graveyard' }]], closes: 1 });
  });

  test('a server that cannot be reached or fails a query leaves the recipe unchecked, with the reason', async () => {
    const refused = fakeServer({ connectError: failed('target_refused', 'Could not connect to PostgreSQL at db.example:5432: password authentication failed for user "admin".') });
    expect(await checkRecipeOnServer(refused.server, connection, recipe)).toEqual({
      checked: false,
      reason: 'Could not connect to PostgreSQL at db.example:5432: password authentication failed for user "admin".',
    });
    const lost = fakeServer({ checkError: failed('target_unreachable', 'Could not check at db.example:5432: the connection was lost.') });
    expect(await checkRecipeOnServer(lost.server, connection, recipe)).toMatchObject({ checked: false });
    expect(lost.calls.closes).toBe(1);
  });

  test('anything but a failure of the server is not hidden', async () => {
    const { server } = fakeServer({ checkError: usageError('x', 'A bug.') });
    await expect(checkRecipeOnServer(server, connection, recipe)).rejects.toThrow('A bug.');
    const crash = fakeServer({ checkError: new TypeError('undefined is not a function') });
    await expect(checkRecipeOnServer(crash.server, connection, recipe)).rejects.toThrow(TypeError);
  });

  test('with creationStatements, grantPermissions is still granted, so it is still checked', async () => {
    const templated = { ...recipe, creationStatements: ['CREATE ROLE "{{name}}"'] };
    const checked = fakeServer();
    expect(await checkRecipeOnServer(checked.server, connection, templated)).toEqual({ checked: true, problems: [] });
    expect(checked.calls.checks).toEqual([[recipe.grants, { reassignTo: undefined }]]);
  });
});

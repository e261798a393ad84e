/**
 * Checks a dynamic secret's recipe against the server of its base before the secret is
 * stored, so that a missing table or an admin without the grant option shows up at
 * `secret create`, not at the first lease. Returns a verdict and never prints: the service
 * turns problems into an error and an unreachable server into a warning.
 */
import { SyError } from '../errors.js';
import type { ConnectOptions, Target } from '../targets/target.js';
import type { BaseConnection, DynamicRecipe } from '../model/secret.js';

export type RecipeVerdict =
  /** The server answered: what it would refuse, one sentence each (empty: nothing). */
  | { checked: true; problems: string[] }
  /** The server could not be asked (unreachable, login refused): why, in one sentence. */
  | { checked: false; reason: string };

/** How to reach a base's server: lease create's connector, its connect timeout, its spinner. */
export interface RecipeServer {
  connect(connection: BaseConnection, options: ConnectOptions): Promise<Target>;
  connectTimeoutMs: number;
  progress?(text: string): void;
}

/**
 * One admin connection, read-only queries, closed before returning. A failure to connect or
 * to query (a SyError of kind `failed`) means "not checked", never "invalid": the recipe
 * may be fine and the server down for a minute.
 */
export async function checkRecipeOnServer(server: RecipeServer, connection: BaseConnection, recipe: DynamicRecipe): Promise<RecipeVerdict> {
  // grantPermissions is granted with or without creationStatements: it is always checked.
  const grants = recipe.grants;
  if (grants.length === 0 && recipe.reassignTo === undefined) return { checked: true, problems: [] };
  let target: Target | undefined;
  try {
    server.progress?.(`Checking the recipe on ${connection.host}:${connection.port}`);
    target = await server.connect(connection, { connectTimeoutMs: server.connectTimeoutMs });
    return { checked: true, problems: await target.checkRecipe(grants, { reassignTo: recipe.reassignTo }) };
  } catch (error) {
    if (error instanceof SyError && error.kind === 'failed') return { checked: false, reason: error.message };
    throw error;
  } finally {
    await target?.close().catch(() => undefined);
  }
}

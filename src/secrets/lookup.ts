import { notFound, usageError } from '../errors.js';
import { type Engine, engineOfType } from '../model/engines.js';
import type { Attributes, BaseConnection, DynamicRecipe, Secret, SecretData } from '../model/secret.js';
import type { Store } from '../store/store.js';
import { kindOf, linkedBasePath, parseBaseConnection, parseDynamicRecipe } from './validate.js';

/** A dynamic secret's link, followed: its base secret, the base's admin connection, and the recipe read for its engine. */
export interface LinkedBase {
  /** The canonical path the link names. */
  basePath: string;
  base: Secret;
  engine: Engine;
  connection: BaseConnection;
  recipe: DynamicRecipe;
}

/**
 * Follows a dynamic secret's link to its base, checked when the dynamic secret is written
 * and again when a lease is issued from it. A secret being written names its link as
 * given ("The linked secret db:pg:root does not exist."); a stored one, whose base went or
 * changed since, is named by its own path (`storedAt`), since that is what the user asked for.
 */
export async function followLink(store: Store, attributes: Attributes, data: SecretData, storedAt?: string): Promise<LinkedBase> {
  const basePath = linkedBasePath(attributes);
  const base = await store.secrets.get({ path: basePath });
  if (!base) {
    throw notFound(
      'linked_secret_not_found',
      storedAt === undefined ? `The linked secret ${basePath} does not exist.` : `The base secret of ${storedAt} no longer exists.`,
    );
  }
  const engine = engineOfType(base.attributes.type);
  if (kindOf(base.attributes) !== 'base' || !engine) {
    throw usageError(
      'linked_secret_not_base',
      storedAt === undefined
        ? `The linked secret ${basePath} is not a base secret (it has no database type).`
        : `The linked secret of ${storedAt} is not a base secret.`,
    );
  }
  const recipe = parseDynamicRecipe(attributes, data, engine);
  return { basePath, base, engine, connection: parseBaseConnection(base.attributes, base.data), recipe };
}

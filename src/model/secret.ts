/**
 * The model of a secret, shared by validation, the store, targets and leases. This folder
 * imports nothing else of sy's, so everything above it can build on it without cycles.
 */
import type { Engine } from './engines.js';

/** The longest lease sy hands out, as in the SyVault API. */
export const MAX_LEASE_SECONDS = 86400;
export const DEFAULT_LEASE_SECONDS = 3600;
/** `connectionLimit`: the most sessions one lease user may hold at once (PRODUCT.md). */
export const DEFAULT_CONNECTION_LIMIT = 10;
export const MAX_CONNECTION_LIMIT = 1000;
export const DEFAULT_POOL = 'default';

export type SecretKind = 'base' | 'dynamic' | 'static';

export type Attributes = Record<string, unknown>;
export type SecretData = Record<string, unknown>;

export interface GrantPermission {
  /** Upper-case privileges, each checked against the engine's list. */
  privileges: string[];
  /** `*` or an identifier. */
  schema: string;
  /** `*` or an identifier. */
  table: string;
}

export interface DynamicRecipe {
  basePath: string;
  grants: GrantPermission[];
  ttl: number;
  maxTtl: number;
  pool: string;
  userPrefix?: string;
  creationStatements?: string[];
  revocationStatements?: string[];
  /** PostgreSQL: the NOLOGIN role that receives what a lease created, instead of dropping it. */
  reassignTo?: string;
  /** The most sessions one lease user may hold at once (CONNECTION LIMIT / MAX_USER_CONNECTIONS). */
  connectionLimit: number;
}

/**
 * A `{{name}}` in a creation or revocation statement: validation checks the names, the
 * targets fill them in. Global, so use it only with replace and matchAll, which keep no state.
 */
export const PLACEHOLDER = /\{\{\s*([a-zA-Z_]+)\s*\}\}/g;

/** `IDENTIFIED BY '{{password}}'`, the one place a MySQL template may hold the password. */
export const MYSQL_IDENTIFIED_BY_PASSWORD = /IDENTIFIED\s+BY\s+'\{\{\s*password\s*\}\}'/gi;

export interface SslSettings {
  ca?: string;
  cert?: string;
  key?: string;
  rejectUnauthorized?: boolean;
  servername?: string;
}

export interface BaseConnection {
  engine: Engine;
  host: string;
  port: number;
  username: string;
  password: string;
  database?: string;
  ssl?: true | SslSettings;
  /**
   * MySQL/MariaDB: the server's RSA public key (PEM), to which the admin's password is
   * encrypted when the server asks for it without verified TLS.
   */
  serverPublicKey?: string;
}

export type SecretRef = { id: string } | { path: string };

export interface Secret {
  id: string;
  path: string;
  version: number;
  description: string;
  attributes: Attributes;
  data: SecretData;
  created: string;
  lastModified: string;
}

export type SecretMetadata = Omit<Secret, 'data'>;

/** What a new version holds. */
export interface SecretContent {
  description: string;
  attributes: Attributes;
  data: SecretData;
}

export interface NewSecret extends SecretContent {
  path: string;
  kind: SecretKind;
  /** Canonical path of the base secret a dynamic secret links to. */
  linkedPath?: string;
}


/**
 * pg probes for Cloudflare Workers when it loads by building a fetch Response unless
 * `navigator` exists, which loads Node's whole HTTP client (~20 ms). Node 21+ defines
 * navigator; on Node 20 sy defines the same userAgent-only shape first. Call this before
 * the first import of a module that imports pg (a target or the PostgreSQL store).
 */
export function definePgNavigator(): void {
  (globalThis as { navigator?: unknown }).navigator ??= { userAgent: `Node.js/${process.versions.node.split('.')[0]}` };
}

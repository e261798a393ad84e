import { hostname, userInfo } from 'node:os';

/** Who the audit log names: SY_CLIENT_ID, else user@host. */
export function defaultActor(env: NodeJS.ProcessEnv): string {
  if (env.SY_CLIENT_ID) return env.SY_CLIENT_ID;
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = env.USER ?? String(process.getuid?.() ?? 'unknown');
  }
  return `${user}@${hostname()}`;
}

import { homedir, platform } from 'node:os';
import { join } from 'node:path';
import { usageError } from '../errors.js';

/** SY_HOME, or the OS data directory (XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows). */
export function resolveHome(env: NodeJS.ProcessEnv): string {
  if (env.SY_HOME) return env.SY_HOME;
  if (platform() === 'win32' && env.LOCALAPPDATA) return join(env.LOCALAPPDATA, 'sy');
  if (env.XDG_DATA_HOME) return join(env.XDG_DATA_HOME, 'sy');
  const home = env.HOME || safeHomedir();
  if (!home || home === '/') {
    throw usageError('no_home', 'There is no home directory to keep the store in.', 'Set SY_HOME to a writable directory.');
  }
  return platform() === 'darwin' ? join(home, 'Library', 'Application Support', 'sy') : join(home, '.local', 'share', 'sy');
}

function safeHomedir(): string | undefined {
  try {
    return homedir();
  } catch {
    return undefined;
  }
}

import { usageError } from '../errors.js';
import { FORMATS } from '../io/format.js';

/**
 * Non-secret preferences, kept with `conf` in the OS config directory
 * (`$XDG_CONFIG_HOME/sy/settings.json`). conf's own encryption is obfuscation, not
 * security, so nothing secret ever goes here: secrets live in the sealed store.
 * conf is loaded only when a preference is read or written.
 */
export const SETTINGS: Record<string, { values: readonly string[]; description: string }> = {
  format: { values: FORMATS, description: 'output format on a terminal when --format is not given (default table)' },
  color: { values: ['auto', 'never'], description: 'colour in tables on a terminal: auto or never (NO_COLOR and --no-color turn off all colour)' },
};

export type Settings = Partial<Record<keyof typeof SETTINGS, string>>;

interface ConfStore {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  delete(key: string): void;
  store: Record<string, unknown>;
  path: string;
}

async function open(): Promise<ConfStore> {
  const { default: Conf } = await import('conf');
  return new Conf({ projectName: 'sy', projectSuffix: '', configName: 'settings', configFileMode: 0o600 }) as unknown as ConfStore;
}

export function checkSetting(key: string, value?: string): void {
  const setting = SETTINGS[key];
  if (!setting) throw usageError('unknown_setting', `"${key.slice(0, 40)}" is not a setting: use ${Object.keys(SETTINGS).join(' or ')}.`);
  if (value !== undefined && !setting.values.includes(value)) {
    throw usageError('invalid_setting', `${key} must be one of ${setting.values.join(', ')}.`);
  }
}

export async function readSettings(): Promise<Settings> {
  try {
    const conf = await open();
    const settings: Settings = {};
    for (const key of Object.keys(SETTINGS)) {
      const value = conf.get(key);
      if (typeof value === 'string' && SETTINGS[key].values.includes(value)) settings[key] = value;
    }
    return settings;
  } catch {
    // An unreadable settings file must not break a command: defaults apply.
    return {};
  }
}

export async function writeSetting(key: string, value: string | undefined): Promise<string> {
  checkSetting(key, value);
  const conf = await open();
  if (value === undefined) conf.delete(key);
  else conf.set(key, value);
  return conf.path;
}

/**
 * Colour through chalk, only when asked for: on a terminal, without NO_COLOR or
 * --no-color. chalk is imported on first use so plain output never loads it.
 */
export interface Paint {
  bold(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
  dim(text: string): string;
}

const plain: Paint = { bold: (t) => t, red: (t) => t, yellow: (t) => t, dim: (t) => t };

export async function paint(enabled: boolean): Promise<Paint> {
  if (!enabled) return plain;
  const { Chalk } = await import('chalk');
  const chalk = new Chalk({ level: 1 });
  return { bold: (t) => chalk.bold(t), red: (t) => chalk.red(t), yellow: (t) => chalk.yellow(t), dim: (t) => chalk.dim(t) };
}

import type { Argument, Command, Option } from 'commander';

/**
 * The command tree as plain data, read from the live commander program: the one model the
 * manual page and the three completion scripts are generated from, so that a new command
 * or flag is documented and completed without anyone remembering to. Only this file knows
 * commander; the generators take a CommandSpec.
 */

/** Where the values of a flag or an argument come from when completing. */
export type ValueSource =
  | { kind: 'choices'; values: readonly string[] }
  /** Secret paths, from `sy __complete paths`. */
  | { kind: 'paths' }
  /** Ids of active leases, from `sy __complete leases`. */
  | { kind: 'leases' }
  | { kind: 'file' }
  /** Free text: nothing to offer. */
  | { kind: 'text' };

export interface OptionSpec {
  flags: string;
  short?: string;
  long?: string;
  description: string;
  /** Absent for a switch. */
  value?: { name: string; optional: boolean; source: ValueSource };
  mandatory: boolean;
  defaultValue?: unknown;
}

export interface ArgumentSpec {
  name: string;
  description: string;
  required: boolean;
  variadic: boolean;
  source: ValueSource;
}

export interface CommandSpec {
  /** The full name, `['sy', 'dynamic', 'lease', 'revoke']`. */
  names: string[];
  aliases: string[];
  description: string;
  subcommands: CommandSpec[];
  options: OptionSpec[];
  arguments: ArgumentSpec[];
}

/** Flags and positional arguments that name secrets or leases (completed from the store). */
const PATH_OPTIONS = new Set(['--path', '--query', '--prefix']);
const PATH_ARGUMENTS = new Set(['path', 'path|id', 'query']);
const LEASE_ARGUMENTS = new Set(['lease_id']);
const FILE_VALUES = new Set(['file']);

/** The visible command tree: hidden commands (`__complete`) and the implicit `help` are left out. */
export function describeTree(program: Command): CommandSpec {
  return describeCommand(program, [program.name()]);
}

function describeCommand(command: Command, names: string[]): CommandSpec {
  const help = command.createHelp();
  const visible = new Set(help.visibleCommands(command));
  return {
    names,
    aliases: command.aliases(),
    description: command.description(),
    subcommands: command.commands.filter((sub) => visible.has(sub)).map((sub) => describeCommand(sub, [...names, sub.name()])),
    options: help.visibleOptions(command).map(describeOption),
    arguments: help.visibleArguments(command).map(describeArgument),
  };
}

function describeOption(option: Option): OptionSpec {
  const takesValue = option.required || option.optional;
  const valueName = /[<[]([^>\]]+)[>\]]/.exec(option.flags)?.[1] ?? 'value';
  let source: ValueSource = { kind: 'text' };
  if (option.argChoices) source = { kind: 'choices', values: option.argChoices };
  else if (option.long && PATH_OPTIONS.has(option.long)) source = { kind: 'paths' };
  else if (FILE_VALUES.has(valueName)) source = { kind: 'file' };
  return {
    flags: option.flags,
    short: option.short,
    long: option.long,
    description: option.description,
    value: takesValue ? { name: valueName, optional: option.optional, source } : undefined,
    mandatory: option.mandatory,
    defaultValue: option.defaultValue,
  };
}

function describeArgument(argument: Argument): ArgumentSpec {
  const name = argument.name();
  let source: ValueSource = { kind: 'text' };
  if (argument.argChoices) source = { kind: 'choices', values: argument.argChoices };
  else if (PATH_ARGUMENTS.has(name)) source = { kind: 'paths' };
  else if (LEASE_ARGUMENTS.has(name)) source = { kind: 'leases' };
  else if (FILE_VALUES.has(name)) source = { kind: 'file' };
  return { name, description: argument.description, required: argument.required, variadic: argument.variadic, source };
}

/** Every command of the tree, parents before children. */
export function allCommands(spec: CommandSpec): CommandSpec[] {
  return [spec, ...spec.subcommands.flatMap(allCommands)];
}

/** The commands that run something (no subcommands), in the order of the tree. */
export function leafCommands(spec: CommandSpec): CommandSpec[] {
  return allCommands(spec).filter((command) => command.subcommands.length === 0);
}

/** `sy dynamic lease revoke`. */
export const fullName = (command: CommandSpec): string => command.names.join(' ');

/** The word that names a command under its parent: `revoke`. */
export const ownName = (command: CommandSpec): string => command.names[command.names.length - 1];

/** Every word that selects a command under its parent: its name, then its aliases. */
export const commandWords = (command: CommandSpec): string[] => [ownName(command), ...command.aliases];

/** `-f`, `--format`: the names a flag is typed as. */
export const flagNames = (option: OptionSpec): string[] => [option.short, option.long].filter((flag): flag is string => flag !== undefined);

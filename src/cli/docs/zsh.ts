import { DYNAMIC_VALUES_NOTE, identifier, scriptHeader, shQuote } from './shell.js';
import { allCommands, commandWords, flagNames, fullName, type CommandSpec, type ValueSource } from './tree.js';

/** zsh `_arguments` text: brackets and colons are special in option descriptions. */
function zshDescription(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/([[\]:])/g, '\\$1');
}

function zshAction(source: ValueSource, fn: string): string {
  switch (source.kind) {
    case 'choices':
      return `(${source.values.map((value) => value.replace(/([\\\s()'"$`:])/g, '\\$1')).join(' ')})`;
    case 'paths':
      return `${fn}__paths`;
    case 'leases':
      return `${fn}__leases`;
    case 'file':
      return '_files';
    case 'text':
      return ' ';
  }
}

function zshOptionSpecs(command: CommandSpec, fn: string): string[] {
  return command.options.flatMap((option) => {
    const names = flagNames(option);
    const exclusion = names.length > 1 ? `(${names.join(' ')})` : '';
    return names.map((flag) => {
      let spec = `${exclusion}${flag}`;
      if (option.value) spec += flag.startsWith('--') ? (option.value.optional ? '=-' : '=') : option.value.optional ? '-' : '+';
      spec += `[${zshDescription(option.description)}]`;
      if (option.value) {
        spec += `${option.value.optional ? '::' : ':'}${zshDescription(option.value.name)}:${zshAction(option.value.source, fn)}`;
      }
      return shQuote(spec);
    });
  });
}

/** The zsh script: `#compdef`, for fpath or for sourcing after compinit. */
export function zshCompletion(tree: CommandSpec): string {
  const name = tree.names[0];
  const fn = `_${identifier(tree)}`;
  const functions = allCommands(tree).map((command) => {
    const id = `_${identifier(command)}`;
    const specs = zshOptionSpecs(command, fn);
    const body: string[] = [];
    if (command.subcommands.length > 0) {
      const entries = command.subcommands.flatMap((sub) => commandWords(sub).map((word) => shQuote(`${word.replace(/:/g, '\\:')}:${sub.description}`)));
      const cases = command.subcommands.map((sub) => `        ${commandWords(sub).map(shQuote).join('|')}) _${identifier(sub)} ;;`);
      body.push(
        '  local curcontext="$curcontext" state state_descr line ret=1',
        '  typeset -A opt_args',
        `  _arguments -C -s -S \\`,
        ...specs.map((spec) => `    ${spec} \\`),
        `    ${shQuote(`1:${fullName(command)} command:->command`)} \\`,
        `    '*:: :->argument' && ret=0`,
        '  case $state in',
        '    command)',
        '      local -a commands',
        `      commands=(${entries.join(' ')})`,
        `      _describe -t commands ${shQuote(`${fullName(command)} command`)} commands && ret=0`,
        '      ;;',
        '    argument)',
        `      curcontext="\${curcontext%:*:*}:${identifier(command).replace(/_/g, '-')}-$words[1]:"`,
        '      case $words[1] in',
        ...cases,
        '      esac',
        '      ret=$?',
        '      ;;',
        '  esac',
        '  return ret',
      );
    } else {
      const positional = command.arguments.map((argument, index) => {
        const position = argument.variadic ? '*' : String(index + 1);
        const optional = !argument.required && !argument.variadic ? ':' : '';
        return shQuote(`${position}:${optional}${zshDescription(argument.name)}:${zshAction(argument.source, fn)}`);
      });
      body.push(`  _arguments -s -S \\`, ...[...specs, ...positional].map((spec, i, all) => `    ${spec}${i < all.length - 1 ? ' \\' : ''}`));
    }
    if (command === tree) {
      // The command typed (sy, ./bin/sy), for the dynamic values; nested functions see it.
      body.unshift(`  local ${fn}__bin="\${words[1]/#\\~/$HOME}"`);
    }
    return `${id}() {\n${body.join('\n')}\n}`;
  });

  return `#compdef ${name}
${scriptHeader('zsh', name)}
# Install it as _${name} in a directory of $fpath, or load it with:
#   source <(${name} completion zsh)    (after compinit)

${DYNAMIC_VALUES_NOTE}
${fn}__values() {
  local bin="\${${fn}__bin:-${name}}"
  SY_NO_SWEEP=1 command $bin __complete $1 --no-sweep </dev/null 2>/dev/null
}

${fn}__paths() {
  local -a values expl
  values=(\${(f)"$(${fn}__values paths)"})
  _wanted secret-paths expl 'secret path' compadd -a values
}

${fn}__leases() {
  local -a values expl
  values=(\${(f)"$(${fn}__values leases)"})
  _wanted leases expl 'lease id' compadd -a values
}

${functions.join('\n\n')}

if [ "$funcstack[1]" = "${fn}" ]; then
  ${fn} "$@"
else
  compdef ${fn} ${name}
fi
`;
}

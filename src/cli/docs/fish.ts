import { DYNAMIC_VALUES_NOTE, fishQuote, identifier, scriptHeader } from './shell.js';
import { allCommands, commandWords, flagNames, fullName, ownName, type CommandSpec } from './tree.js';

/** The fish script: `sy completion fish | source`, or ~/.config/fish/completions/sy.fish. */
export function fishCompletion(tree: CommandSpec): string {
  const name = tree.names[0];
  const fn = `__${identifier(tree)}`;
  const commands = allCommands(tree);

  const valuedCases = commands.flatMap((command) => {
    const flags = command.options.filter((option) => option.value && !option.value.optional).flatMap(flagNames);
    return flags.length > 0 ? [`        case ${fishQuote(fullName(command))}`, `            contains -- $argv[2] ${flags.map(fishQuote).join(' ')}`] : [];
  });
  const subcommandCases = commands.flatMap((command) =>
    command.subcommands.flatMap((sub) =>
      commandWords(sub).map((word) => `        case ${fishQuote(`${fullName(command)} ${word}`)}\n            echo ${fishQuote(ownName(sub))}`),
    ),
  );

  const lines: string[] = [];
  for (const command of commands) {
    const at = `${fn}_at "${fullName(command)}"`;
    for (const sub of command.subcommands) {
      lines.push(`complete -c ${name} -n ${fishQuote(`${at} 0`)} -f -a ${fishQuote(ownName(sub))} -d ${fishQuote(sub.description)}`);
    }
    for (const option of command.options) {
      const parts = [`complete -c ${name} -n ${fishQuote(at)}`];
      if (option.short) parts.push(`-s ${option.short.replace(/^-/, '')}`);
      if (option.long) parts.push(`-l ${option.long.replace(/^--/, '')}`);
      if (option.value) {
        const source = option.value.source;
        if (source.kind === 'file') parts.push('-r -F');
        else {
          parts.push('-x');
          if (source.kind === 'choices') parts.push(`-a ${fishQuote(source.values.join(' '))}`);
          if (source.kind === 'paths' || source.kind === 'leases') parts.push(`-a ${fishQuote(`(${fn}_dynamic ${source.kind})`)}`);
        }
      }
      parts.push(`-d ${fishQuote(option.description)}`);
      lines.push(parts.join(' '));
    }
    command.arguments.forEach((argument, index) => {
      const condition = argument.variadic ? `${at} ${index}+` : `${at} ${index}`;
      const source = argument.source;
      let values: string | undefined;
      if (source.kind === 'choices') values = source.values.join(' ');
      if (source.kind === 'paths' || source.kind === 'leases') values = `(${fn}_dynamic ${source.kind})`;
      if (source.kind === 'file') values = '(__fish_complete_path (commandline -ct))';
      if (values !== undefined) lines.push(`complete -c ${name} -n ${fishQuote(condition)} -f -a ${fishQuote(values)} -d ${fishQuote(argument.description || argument.name)}`);
    });
  }

  return `${scriptHeader('fish', name)}
# Install it as ~/.config/fish/completions/${name}.fish, or load it with:
#   ${name} completion fish | source

# Prints the command being completed ('${name} dynamic lease revoke'), then how many positional
# arguments it already has.
function ${fn}_state
    set -l tokens (commandline -opc)
    set -l path ${fishQuote(name)}
    set -l positionals 0
    set -l pending 0
    set -l ended 0
    for token in $tokens[2..-1]
        if test $pending = 1
            set pending 0
        else if test $ended = 1
            set positionals (math $positionals + 1)
        else if test "$token" = --
            set ended 1
        else if string match -q -- '-*=*' $token
        else if string match -q -- '-*' $token
            if ${fn}_valued "$path" $token
                set pending 1
            end
        else
            set -l sub (${fn}_subcommand "$path" $token)
            if test -n "$sub"
                set path "$path $sub"
                set positionals 0
            else
                set positionals (math $positionals + 1)
            end
        end
    end
    echo $path
    echo $positionals
end

function ${fn}_valued --argument-names path flag
    switch $path
${valuedCases.join('\n')}
        case '*'
            return 1
    end
end

function ${fn}_subcommand --argument-names path word
    switch "$path $word"
${subcommandCases.join('\n')}
    end
end

# True when completing the command named $argv[1]; with $argv[2] (N or N+), only when it
# has N positional arguments (or at least N).
function ${fn}_at
    set -l state (${fn}_state)
    test "$state[1]" = "$argv[1]"; or return 1
    set -q argv[2]; or return 0
    if string match -q -- '*+' $argv[2]
        test $state[2] -ge (string trim -r -c + -- $argv[2])
    else
        test $state[2] -eq $argv[2]
    end
end

${DYNAMIC_VALUES_NOTE}
function ${fn}_dynamic
    set -l tokens (commandline -opc)
    set -l bin (string replace -r '^~/' "$HOME/" -- $tokens[1])
    test -n "$bin"; or set bin ${name}
    env SY_NO_SWEEP=1 $bin __complete $argv[1] --no-sweep </dev/null 2>/dev/null
end

complete -c ${name} -f
${lines.join('\n')}
`;
}

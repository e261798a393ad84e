import { DYNAMIC_VALUES_NOTE, identifier, scriptHeader, shQuote } from './shell.js';
import { allCommands, commandWords, flagNames, fullName, type CommandSpec } from './tree.js';

/** The bash script: `source <(sy completion bash)`. */
export function bashCompletion(tree: CommandSpec): string {
  const name = tree.names[0];
  const fn = `_${identifier(tree)}`;
  const commands = allCommands(tree);

  const specCases = commands.flatMap((command) => {
    const flags = command.options.flatMap(flagNames);
    const valued = command.options.filter((option) => option.value && !option.value.optional).flatMap(flagNames);
    const args = command.arguments.map((argument) => (argument.variadic ? `${argument.source.kind}...` : argument.source.kind));
    const subcommands = command.subcommands.flatMap(commandWords);
    return [
      `    ${shQuote(fullName(command))})`,
      `      ${fn}_subcommands=${shQuote(subcommands.join(' '))}`,
      `      ${fn}_flags=${shQuote(flags.join(' '))}`,
      `      ${fn}_valued=${shQuote(valued.join(' '))}`,
      `      ${fn}_args=${shQuote(args.join(' '))}`,
      '      ;;',
    ];
  });

  // Which command an alias stands for.
  const aliasCases = commands.flatMap((command) =>
    command.aliases.map((alias) => `    ${shQuote(`${fullName(command).replace(/ [^ ]+$/, '')} ${alias}`)}) echo ${shQuote(fullName(command))} ;;`),
  );

  const valueCases = commands.flatMap((command) =>
    command.options.flatMap((option) => {
      if (!option.value) return [];
      const patterns = flagNames(option).map((flag) => shQuote(`${fullName(command)} ${flag}`)).join('|');
      const source = option.value.source;
      const words = source.kind === 'choices' ? `; ${fn}_words=${shQuote(source.values.join(' '))}` : '';
      return [`    ${patterns}) ${fn}_source=${source.kind}${words} ;;`];
    }),
  );

  const argumentChoiceCases = commands.flatMap((command) =>
    command.arguments.flatMap((argument, index) =>
      argument.source.kind === 'choices' ? [`    ${shQuote(`${fullName(command)} ${index}`)}) ${fn}_words=${shQuote(argument.source.values.join(' '))} ;;`] : [],
    ),
  );

  return `${scriptHeader('bash', name)}
# Load it with: source <(${name} completion bash)
# or install it as ${name} in bash-completion's directory (e.g. /usr/share/bash-completion/completions).

# The shape of one command: subcommands, flags, flags that take a value, positional arguments.
${fn}_spec() {
  ${fn}_subcommands= ${fn}_flags= ${fn}_valued= ${fn}_args=
  case "$1" in
${specCases.join('\n')}
  esac
}

${fn}_resolve_alias() {
  case "$1" in
${aliasCases.join('\n')}
    *) echo "$1" ;;
  esac
}

# Where the values of a flag come from: choices, paths, leases, file or text.
${fn}_value_source() {
  ${fn}_source=text ${fn}_words=
  case "$1 $2" in
${valueCases.join('\n')}
  esac
}

${fn}_argument_choices() {
  ${fn}_words=
  case "$1 $2" in
${argumentChoiceCases.join('\n')}
  esac
}

${DYNAMIC_VALUES_NOTE}
${fn}_dynamic() {
  local bin="\${${fn}_bin:-${name}}"
  [[ $bin == "~/"* ]] && bin="$HOME/\${bin#"~/"}"
  SY_NO_SWEEP=1 command "$bin" __complete "$1" --no-sweep </dev/null 2>/dev/null
}

${fn}_add() { # $1: kind or word list source, $2: the word being completed
  local candidate
  case "$1" in
    paths|leases)
      while IFS= read -r candidate; do
        [[ -n $candidate && $candidate == "$2"* ]] && COMPREPLY+=("$candidate")
      done < <(${fn}_dynamic "$1")
      ;;
    file)
      compopt -o filenames 2>/dev/null
      while IFS= read -r candidate; do COMPREPLY+=("$candidate"); done < <(compgen -f -- "$2")
      ;;
    choices)
      while IFS= read -r candidate; do COMPREPLY+=("$candidate"); done < <(compgen -W "\${${fn}_words}" -- "$2")
      ;;
  esac
}

${fn}() {
  local IFS=$' \\t\\n'
  # Words are taken from the line itself, not COMP_WORDS, which bash splits at ':' and '='.
  local line="\${COMP_LINE:0:COMP_POINT}"
  local -a words=()
  read -r -a words <<< "$line"
  local cur=""
  if [[ -n $line && $line != *[[:space:]] && \${#words[@]} -gt 0 ]]; then
    local n=\${#words[@]}
    cur="\${words[n-1]}"
    words=("\${words[@]:0:n-1}")
  fi
  local ${fn}_bin="\${words[0]}"
  local ${fn}_subcommands ${fn}_flags ${fn}_valued ${fn}_args ${fn}_source ${fn}_words
  local path=${shQuote(name)} word pending="" positionals=0 i ended=""
  ${fn}_spec "$path"
  for ((i = 1; i < \${#words[@]}; i++)); do
    word="\${words[i]}"
    if [[ -n $pending ]]; then pending=""; continue; fi
    if [[ -n $ended ]]; then ((positionals++)); continue; fi
    case "$word" in
      --) ended=1 ;;
      -*=*) ;;
      -*) [[ " \${${fn}_valued} " == *" $word "* ]] && pending="$word" ;;
      *)
        if [[ -n \${${fn}_subcommands} && " \${${fn}_subcommands} " == *" $word "* ]]; then
          path="$(${fn}_resolve_alias "$path $word")"
          ${fn}_spec "$path"
          positionals=0
        else
          ((positionals++))
        fi
        ;;
    esac
  done

  COMPREPLY=()
  local value="" flag=""
  if [[ -n $pending ]]; then
    flag="$pending" value="$cur"
  elif [[ -z $ended && $cur == -*=* ]]; then
    flag="\${cur%%=*}" value="\${cur#*=}"
  fi
  if [[ -n $flag ]]; then
    ${fn}_value_source "$path" "$flag"
    ${fn}_add "\${${fn}_source}" "$value"
    # bash replaces only the part of the word after the last ':' or '='.
    if [[ $value == *:* && $COMP_WORDBREAKS == *:* ]]; then
      local prefix="\${value%"\${value##*:}"}" k
      for k in "\${!COMPREPLY[@]}"; do COMPREPLY[k]="\${COMPREPLY[k]#"$prefix"}"; done
    elif [[ -z $pending && $COMP_WORDBREAKS != *=* ]]; then
      local k
      for k in "\${!COMPREPLY[@]}"; do COMPREPLY[k]="$flag=\${COMPREPLY[k]}"; done
    fi
    return 0
  fi
  if [[ -z $ended && $cur == -* ]]; then
    while IFS= read -r word; do COMPREPLY+=("$word"); done < <(compgen -W "\${${fn}_flags}" -- "$cur")
    return 0
  fi
  if [[ -n \${${fn}_subcommands} ]]; then
    while IFS= read -r word; do COMPREPLY+=("$word"); done < <(compgen -W "\${${fn}_subcommands}" -- "$cur")
    return 0
  fi
  local -a kinds=(\${${fn}_args})
  local kind="\${kinds[positionals]}"
  if [[ -z $kind && \${#kinds[@]} -gt 0 && \${kinds[\${#kinds[@]}-1]} == *... ]]; then kind="\${kinds[\${#kinds[@]}-1]}"; fi
  kind="\${kind%...}"
  if [[ $kind == choices ]]; then ${fn}_argument_choices "$path" "$positionals"; fi
  [[ -n $kind ]] && ${fn}_add "$kind" "$cur"
  if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
    local prefix="\${cur%"\${cur##*:}"}" k
    for k in "\${!COMPREPLY[@]}"; do COMPREPLY[k]="\${COMPREPLY[k]#"$prefix"}"; done
  fi
  return 0
}

complete -F ${fn} ${name}
`;
}

/**
 * Writing roff for the manual page: escaping, the little markup of the written sections
 * (`code` in bold, {name} in italics) and the few block shapes the page is made of.
 * Pure functions of text.
 */

/** Escapes for roff in code: every character stands for itself. */
export function roffCode(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/'/g, '\\(aq')
    .replace(/`/g, '\\(ga')
    .replace(/~/g, '\\(ti')
    .replace(/\^/g, '\\(ha');
}

/** Code in bold: a command, a flag, a value typed as shown. */
export const bold = (code: string): string => `\\fB${roffCode(code)}\\fP`;

/** Code in italics: a name that stands for something the user supplies. */
export const italic = (code: string): string => `\\fI${roffCode(code)}\\fP`;

/** The sentence that lists fixed choices: `One of: json, yaml.` */
export const oneOf = (values: readonly string[]): string => `One of: ${values.map((value) => bold(value)).join(', ')}.`;

/**
 * Escapes prose for roff and renders a little markup: `code` in bold, {name} in italics.
 * A hyphen that starts an option (`-q`, `--no-sweep`) becomes a minus sign, as do the
 * hyphens inside it, so that copying from the page gives what the shell wants.
 */
export function roffProse(text: string): string {
  let out = '';
  const pattern = /`([^`]+)`|\{([^}\s]+)\}/g;
  let last = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    out += roffPlain(text.slice(last, match.index));
    out += match[1] !== undefined ? bold(match[1]) : italic(match[2]);
    last = match.index + match[0].length;
  }
  return out + roffPlain(text.slice(last));
}

function roffPlain(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/(^|[\s([|,=/])(--?[A-Za-z0-9][A-Za-z0-9-]*)/g, (_, before: string, flag: string) => before + flag.replace(/-/g, '\\-'));
}

/** A text line: a leading dot or apostrophe would make it a request. */
export function textLine(line: string): string {
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/** Text for a quoted macro argument. */
export function macroArgument(text: string): string {
  return text.replace(/"/g, '\\(dq');
}

/** A description from the tree as a sentence: capitalised, with a full stop. */
export function sentence(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') return trimmed;
  const capitalised = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capitalised) ? capitalised : `${capitalised}.`;
}

/** Lines of prose, as written (roff fills them), each trimmed. */
function proseLines(text: string): string[] {
  return text.split('\n').map((line) => textLine(roffProse(line.trim())));
}

/** A paragraph of prose (blank-line separated paragraphs become .PP). */
export function paragraphs(text: string): string[] {
  return text
    .trim()
    .split(/\n\s*\n/)
    .flatMap((paragraph, index) => [...(index > 0 ? ['.PP'] : []), ...proseLines(paragraph)]);
}

/** An indented block of code, one line per line, as a paragraph of its own. */
export function codeBlock(code: string): string[] {
  return [
    '.PP',
    '.RS 4',
    '.nf',
    ...code
      .replace(/^\n+|\s+$/g, '')
      .split('\n')
      .map((line) => (line === '' ? '.sp' : textLine(roffCode(line)))),
    '.fi',
    '.RE',
  ];
}

/** A tagged paragraph: the tag in the markup of `roffProse`, then the body. */
export function tagged(tag: string, body: string): string[] {
  return ['.TP', textLine(roffProse(tag)), ...proseLines(body.trim())];
}

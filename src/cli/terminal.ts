// Owns making text output safe for a terminal: what a bundle or a repository holds (labels, creators,
// paths, messages that quote them) may carry escape sequences that would move the cursor, erase a line,
// retitle the window or reorder text on the operator's screen. Every human-readable line the CLI
// prints goes through here: control characters (C0 but newline and tab, DEL, C1), the bidirectional
// controls and the line and paragraph separators are shown as escapes (`\x1b`, `\u202e`). A field that
// must stay on its line (a label in a table) escapes newline and tab too. JSON output is not touched
// (JSON.stringify escapes the C0 controls itself), nor `cat`'s raw bytes.

/** Characters never printed as they are. */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/gu;
/** The same, and newline and tab: for a field inside a line. */
const UNSAFE_IN_LINE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/gu;

const escaped = (ch: string): string => {
  if (ch === '\n') return '\\n';
  if (ch === '\t') return '\\t';
  if (ch === '\r') return '\\r';
  const code = ch.codePointAt(0) as number;
  return code < 0x100
    ? `\\x${code.toString(16).padStart(2, '0')}`
    : `\\u${code.toString(16).padStart(4, '0')}`;
};

/** Text whose lines are kept, with every other control character shown as an escape. */
export function terminalText(text: string): string {
  return text.replace(UNSAFE, escaped);
}

/** One field of a line (a label, a path): every control character, newline and tab included, escaped. */
export function terminalField(text: string): string {
  return text.replace(UNSAFE_IN_LINE, escaped);
}

/** Prints human-readable text and a newline on stdout, made safe for a terminal. */
export function printText(text: string): void {
  process.stdout.write(`${terminalText(text)}\n`);
}

// Owns printing a name (a path in a memdir or a snapshot) as one shell word, as GNU ls, find and diff
// of this CLI print it: one name per word, unambiguous in a list, never a control character on the
// operator's terminal. Pure. (The CLI's text output, and the library's warnings that list names.)

/** Characters a name may hold and still be printed as it is (shellWord). */
const PLAIN_NAME = /^[\p{L}\p{M}\p{N}._/@%+=:,-]+$/u;
/** Characters that cannot be pasted inside single quotes: control, format, unassigned, line separators. */
const UNPRINTABLE = /[\p{C}\p{Zl}\p{Zp}]/u;
const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\t': '\\t', '\r': '\\r' };

/**
 * A name (a path in a snapshot) as one shell word that, pasted into a command (`nexo-memory cat`), is the
 * name again: as it is when it holds only letters, digits and `._/@%+=:,-`; otherwise in single quotes,
 * each `'` as `'\''` (closing the quotes, an escaped `'`, reopening them) and each unprintable character as an ANSI-C quoted escape between the quoted parts
 * (`'a'$'\n''b'`), as GNU ls's shell-escape quoting does. For text output only; JSON keeps names as they are.
 */
export function shellWord(name: string): string {
  if (PLAIN_NAME.test(name)) return name;
  let out = '';
  let quoted = '';
  const flush = () => {
    if (quoted) out += `'${quoted}'`;
    quoted = '';
  };
  for (const ch of name) {
    if (ch === "'") {
      flush();
      out += "\\'";
    } else if (UNPRINTABLE.test(ch)) {
      flush();
      const code = ch.codePointAt(0) as number;
      const escaped =
        NAMED_ESCAPES[ch] ??
        (code < 0x80
          ? `\\x${code.toString(16).padStart(2, '0')}`
          : code < 0x10000
            ? `\\u${code.toString(16).padStart(4, '0')}`
            : `\\U${code.toString(16).padStart(8, '0')}`);
      out += `$'${escaped}'`;
    } else quoted += ch;
  }
  flush();
  return out || "''";
}

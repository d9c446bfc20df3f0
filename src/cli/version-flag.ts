// Owns recognising a command line that asks for the version and nothing else (`--version` or `-V`, one
// or more times): main.ts answers it before loading the program (the parser and the commands' options,
// ~20 ms of start-up here), and program.ts builds no command for it.

/** Whether the arguments after `node` and the script ask for the version only. */
export const asksOnlyVersion = (args: readonly string[]): boolean =>
  args.length > 0 && args.every((a) => a === '--version' || a === '-V');

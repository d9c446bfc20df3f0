// Owns loading the command-line parser for the CLI's modules: commander, typed by its wrapper
// @commander-js/extra-typings, from its one-file bundle (dist/vendor/commander.cjs, util/vendored.ts)
// when built, else the package. Every run loads it; importing the wrapper as ESM from its CommonJS
// package (7 files, parsed by the ESM loader's CommonJS lexer) cost ~20 ms over `node`, the bundle ~9.
// Every module of the CLI takes these classes from here: one copy of commander per process.

import type * as Typed from '@commander-js/extra-typings';
import { vendored } from '../util/vendored.js';

const commander = vendored<typeof Typed>('commander');

export const Command = commander.Command;
export const CommanderError = commander.CommanderError;
export const Option = commander.Option;

#!/usr/bin/env node
// Installed entry point: runs the compiled CLI (built by `npm run build`, which `npm ci` runs via prepare).
// The first line catches SIGTERM and SIGINT for `mcp` (src/cli/stop-signals.ts, a few lines importing
// nothing), so a signal that comes while the rest loads ends the server cleanly instead of by the signal.
// The heap settings (src/cli/heap-settings.ts) come first and the CLI is imported after it, dynamically: a static
// import would load (and allocate for) the CLI's whole module graph before the setting ran. Node's compile
// cache (src/cli/compile-cache.ts, Node 22.1 and later) is turned on before that import, so that every module
// the command loads is read back compiled on the next run.
import '../dist/src/cli/stop-signals.js';
import '../dist/src/cli/heap-settings.js';
import { enableCompileCache } from '../dist/src/cli/compile-cache.js';

enableCompileCache();
await import('../dist/src/cli/main.js');

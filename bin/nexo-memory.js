#!/usr/bin/env node
// Installed entry point: runs the compiled CLI (built by `npm run build`, which `npm ci` runs via prepare).
// The heap settings (src/cli/heap-settings.ts) come first and the CLI is imported after it, dynamically: a static
// import would load (and allocate for) the CLI's whole module graph before the setting ran.
import '../dist/src/cli/heap-settings.js';

await import('../dist/src/cli/main.js');

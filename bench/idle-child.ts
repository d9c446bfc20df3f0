// Owns the floor of the children's peak RSS: loads the same modules as the snapshot, verify and list
// children under tsx and does nothing, so their peak RSS can be read against it.

import '../src/snapshotter/local.js';
import '../src/verify/verify.js';
import { rssFields } from './lib.js';

console.log(JSON.stringify({ ms: 0, ...rssFields() }));

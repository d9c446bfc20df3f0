// Owns the option groups several commands share, so each flag is spelled and documented once.

import { InvalidInputError } from '../../model/errors.js';
import { Option } from '../commander.js';
import { parseIntFlag } from '../context.js';

export const agentOption = () =>
  new Option('--agent <id>', 'agent id ([a-z0-9_-], 1..64)').makeOptionMandatory();
export const tenantOption = () => new Option('--tenant <tenant>', 'tenant').default('default');
export const jsonOption = () => new Option('--json', 'print the result as JSON on stdout');
export const noProgressOption = () => new Option('--no-progress', 'no progress display on stderr');

export const stateRootOption = () =>
  new Option('--state-root <path>', 'snapshot store root (default ./state, or the config file)');
export const configOption = () =>
  new Option('--config <file>', 'YAML config file (default $NEXO_MEMORY_CONFIG)');
export const memdirRootOption = () =>
  new Option('--memdir-root <path>', 'root of agent memdirs (<root>/<agent>; default: state root)');
export const sqliteRootOption = () =>
  new Option(
    '--sqlite-root <path>',
    'root of agent databases and state files (<root>/<agent>; default: state root)',
  );
export const zstdLevelOption = () =>
  new Option('--zstd-level <n>', 'zstd level 1..19 (default 3)').argParser((v: string) => {
    const n = parseIntFlag('--zstd-level')(v);
    if (n < 1 || n > 19) throw new InvalidInputError(`--zstd-level must be 1..19, got ${n}`);
    return n;
  });

export const identityOption = () =>
  new Option(
    '--decrypt-identity <file>',
    'age identity file for encrypted bundles and repositories (default: encryption.identity_path)',
  );
export const encryptOption = () =>
  new Option(
    '--encrypt <recipient>',
    'encrypt to this age1… recipient (repeatable; default: encryption.recipients); a repository must have been created encrypted to exactly these',
  ).argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);

export const repoOption = () =>
  new Option(
    '--repo <location>',
    'the repository: a path, nats://host:port[,host:port]/bucket or s3://bucket[/prefix] (default $NEXO_MEMORY_REPO, then store: in the config, then <state root>/repository)',
  );
export const natsOption = () =>
  new Option('--nats <url>', 'publish lifecycle events to this NATS broker (default: events.nats_url)');
export const metricsFileOption = () =>
  new Option(
    '--metrics-file <path>',
    'write metrics in the node_exporter textfile format at the end of the run (default: metrics.textfile)',
  );
const repeatable = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

export const signOption = () =>
  new Option(
    '--sign <keyfile>',
    'sign the manifest with this ed25519 secret key file (default: signing.key_path)',
  );
export const trustOption = () =>
  new Option(
    '--trust <pubkey>',
    'require a valid signature by this key: nexo-sign-pub1… or a file of keys (repeatable)',
  ).argParser(repeatable);

// Owns loading the NATS client: its four packages (connection, JetStream, key-value and object stores)
// as one dependency (util/vendored.ts: one bundle from dist), on first use, so a run that never talks
// to NATS never loads it. Types come from the packages themselves. Also the authenticator of a `.creds`
// file, checked when it is read (a file that is not one is a configuration error, named, not repeated).

import type * as Jetstream from '@nats-io/jetstream';
import type * as Kv from '@nats-io/kv';
import type * as Obj from '@nats-io/obj';
import type * as Transport from '@nats-io/transport-node';
import { ConfigError, IoError } from '../model/errors.js';
import { MAX_KEY_FILE_BYTES, readSmallFile, SmallFileProblem } from './small-file.js';
import { vendored } from './vendored.js';

export type NatsClient = typeof Transport & typeof Jetstream & typeof Kv & typeof Obj;

/** The NATS client's exports (loaded by the first call). */
export const natsClient = (): NatsClient => vendored<NatsClient>('nats');

/**
 * The authenticator of a NATS `.creds` file (a user JWT and an NKey seed), tried once on a nonce so a
 * file that is not one fails here (`CONFIG`, naming the file, never quoting it) instead of at the
 * server's challenge, where the client's message ("nkeys: invalid encoded key") looked like an I/O error.
 */
export function credsFileAuthenticator(path: string): Transport.Authenticator {
  let bytes: Buffer;
  try {
    bytes = readSmallFile(path, MAX_KEY_FILE_BYTES, 'a credentials file');
  } catch (err) {
    if (err instanceof SmallFileProblem && !err.system)
      throw new ConfigError(err.describe('NATS credentials file', path));
    throw new IoError(
      `reading the NATS credentials file ${path}`,
      err instanceof SmallFileProblem ? err.cause : err,
    );
  }
  const auth = natsClient().credsAuthenticator(bytes);
  try {
    auth('nonce');
  } catch (err) {
    throw new ConfigError(
      `${path} is not a NATS credentials file (a user JWT and an NKey seed): ${(err as Error).message}`,
    );
  }
  return auth;
}

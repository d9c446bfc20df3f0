// Owns loading the NATS client: its four packages (connection, JetStream, key-value and object stores)
// as one dependency (util/vendored.ts: one bundle from dist), on first use, so a run that never talks
// to NATS never loads it. Types come from the packages themselves.

import type * as Jetstream from '@nats-io/jetstream';
import type * as Kv from '@nats-io/kv';
import type * as Obj from '@nats-io/obj';
import type * as Transport from '@nats-io/transport-node';
import { vendored } from './vendored.js';

export type NatsClient = typeof Transport & typeof Jetstream & typeof Kv & typeof Obj;

/** The NATS client's exports (loaded by the first call). */
export const natsClient = (): NatsClient => vendored<NatsClient>('nats');

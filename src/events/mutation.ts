// Owns the MemoryMutationPublisher of the original (§11, §15): host runtimes call `onMutation` at each
// write of an agent's memory (a long-term row, a compaction, a git commit, a memory file); it builds the
// mutation event (scope, op, key, optional hashes, ts_ms) and hands it to the publisher for
// `<mutation prefix>.<agent_id>`. Never blocks and never fails the host's write.

import { InvalidInputError } from '../model/errors.js';
import { validateAgentId, validateTenant } from '../model/ids.js';
import {
  MUTATION_OPS,
  MUTATION_SCOPES,
  type MutationEvent,
  type MutationOp,
  type MutationScope,
  mutationEvent,
} from './payloads.js';
import type { EventPublisher } from './publisher.js';

export interface MutationHashes {
  /** Content hash before the write (absent for an insert). */
  oldHash?: string;
  /** Content hash after the write (absent for a delete). */
  newHash?: string;
}

export interface MemoryMutationPublisherOptions {
  /** `events.mutation_publish_enabled` (default true): when false, onMutation does nothing. */
  enabled?: boolean;
}

export class MemoryMutationPublisher {
  readonly enabled: boolean;

  constructor(
    private readonly publisher: EventPublisher,
    opts: MemoryMutationPublisherOptions = {},
  ) {
    this.enabled = opts.enabled ?? true;
  }

  /**
   * Publishes one mutation. Bad arguments (an unknown scope or op, an invalid agent id) are a bug of
   * the caller and throw InvalidInputError; delivery problems never throw. Returns the event queued,
   * or undefined when publishing is disabled.
   */
  onMutation(
    agentId: string,
    tenant: string,
    scope: MutationScope,
    op: MutationOp,
    key: string,
    hashes: MutationHashes = {},
  ): MutationEvent | undefined {
    if (!this.enabled) return undefined;
    if (!(MUTATION_SCOPES as readonly string[]).includes(scope))
      throw new InvalidInputError(`mutation scope must be one of ${MUTATION_SCOPES.join(', ')}`);
    if (!(MUTATION_OPS as readonly string[]).includes(op))
      throw new InvalidInputError(`mutation op must be one of ${MUTATION_OPS.join(', ')}`);
    const event = mutationEvent({
      agentId: validateAgentId(agentId),
      tenant: validateTenant(tenant),
      scope,
      op,
      key,
      oldHash: hashes.oldHash,
      newHash: hashes.newHash,
    });
    this.publisher.publishMutation(event);
    return event;
  }
}

// Owns the NATS subjects of the original (§11): lifecycle events on
// `<lifecycle prefix>.<agent_id>.<kind>` (gc on `<lifecycle prefix>._all.gc`), mutation events on
// `<mutation prefix>.<agent_id>`. The prefixes are configurable (`events.*_subject_prefix`).

export const LIFECYCLE_SUBJECT_PREFIX = 'nexo.memory.snapshot';
export const MUTATION_SUBJECT_PREFIX = 'nexo.memory.mutated';
/** The agent token of subjects that concern every agent (the gc sweep). */
export const ALL_AGENTS_TOKEN = '_all';

export interface SubjectPrefixes {
  lifecycle: string;
  mutation: string;
}

export const DEFAULT_PREFIXES: SubjectPrefixes = {
  lifecycle: LIFECYCLE_SUBJECT_PREFIX,
  mutation: MUTATION_SUBJECT_PREFIX,
};

/** A prefix is one or more dot-separated tokens without wildcards or whitespace. */
export const SUBJECT_PREFIX_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export function lifecycleSubject(
  prefix: string,
  agentId: string,
  kind: 'created' | 'restored' | 'deleted',
): string {
  return `${prefix}.${agentId}.${kind}`;
}

export function gcSubject(prefix: string): string {
  return `${prefix}.${ALL_AGENTS_TOKEN}.gc`;
}

export function mutationSubject(prefix: string, agentId: string): string {
  return `${prefix}.${agentId}`;
}

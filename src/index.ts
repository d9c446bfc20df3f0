// The library entry: the MemorySnapshotter port, the local-filesystem implementation, the pluggable
// interfaces (paths, state, write gate), the public types and the errors.

export { ClosureResolver, DefaultPathResolver, type PathResolver } from './agent/resolver.js';
export {
  JsonFileStateProvider,
  NoopStateProvider,
  type StateProvider,
  type StateValue,
} from './agent/state.js';
export { WriteGate, type WriteGateOptions, WriteGateTimeoutError } from './agent/write-gate.js';
export type { DiffRequest, SnapshotDiff } from './diff/diff.js';
export type { FileChange } from './diff/memdir.js';
export type { DatabaseDiff, SchemaChange, TableDiff } from './diff/sqlite.js';
export {
  ARTIFACT_KINDS,
  type ArtifactKind,
  BUNDLE_FORMAT,
  BUNDLE_FORMAT_V1,
  CURRENT_SCHEMA,
  MANIFEST_VERSION,
} from './format/constants.js';
export {
  type Artifact,
  canonicalJson,
  digestSeal,
  type GitInfo,
  type Manifest,
  manifestSeal,
  parseManifest,
  type RedactionReport,
} from './format/manifest.js';
export { readManifestOnly } from './format/reader.js';
export * from './model/errors.js';
export {
  DEFAULT_TENANT,
  newSnapshotId,
  parseSnapshotId,
  validateAgentId,
  validateTenant,
} from './model/ids.js';
export * from './model/types.js';
export {
  DEFAULT_POLICY_ID as REDACTION_POLICY_ID,
  ORIGINAL_RULE_IDS,
  type RedactionRule,
  RULES as REDACTION_RULES,
  RULESET_VERSION,
} from './policy/redaction/rules.js';
export {
  compilePolicy as compileRedactionPolicy,
  type RedactionOptions,
  type RedactionPolicy,
  redactText,
} from './policy/redaction/scan.js';
export { DEFAULT_POLICY, type Decision, type RetentionPolicy } from './policy/retention.js';
export {
  type AgentGcReport,
  type GcOptions,
  type RetentionTickReport,
  RetentionWorker,
} from './snapshotter/gc.js';
export type { ExportOptions, MemorySnapshotter, VerifyRequestOptions } from './snapshotter/interface.js';
export { LocalSnapshotter, type LocalSnapshotterOptions } from './snapshotter/local.js';
export { verifyExitCode } from './verify/verify.js';

// The library entry: the MemorySnapshotter port, the local-filesystem implementation, the pluggable
// interfaces (paths, state, write gate), the public types and the errors.

export {
  PRE_DREAM_CREATED_BY,
  PRE_DREAM_LABEL_PREFIX,
  type PreDreamResult,
  PreDreamSnapshotAdapter,
  type PreDreamSnapshotHook,
  preDreamHookFromConfig,
  preDreamLabel,
} from './agent/pre-dream.js';
export {
  PRE_MUTATING_TOOL_CREATED_BY,
  PRE_MUTATING_TOOL_LABEL_PREFIX,
  type PreMutatingToolOptions,
  type PreMutatingToolResult,
  PreMutatingToolSnapshotAdapter,
  type PreMutatingToolSnapshotHook,
  preMutatingToolHookFromConfig,
  preMutatingToolLabel,
  type SkipReason,
  type ThrottledSnapshotter,
} from './agent/pre-mutating-tool.js';
export { ClosureResolver, DefaultPathResolver, type PathResolver } from './agent/resolver.js';
export {
  JsonFileStateProvider,
  NoopStateProvider,
  type StateProvider,
  type StateValue,
} from './agent/state.js';
export { WriteGate, type WriteGateOptions, WriteGateTimeoutError } from './agent/write-gate.js';
export { type BackendSettings, parseRepoLocation, type RepoLocation } from './backend/open.js';
export type { BackendObserver, RetryOptions } from './backend/remote.js';
export { parseSince } from './browse/since.js';
export type {
  CatDatabase,
  CatFile,
  CatOptions,
  CatResult,
  CatTable,
  CellValue,
  FindLocation,
  FindRequest,
  FindResult,
  FindSnapshotHit,
  LsEntry,
  LsOptions,
  LsResult,
} from './browse/types.js';
export {
  CONFIG_DEFAULTS,
  type EncryptionConfig,
  type EventsConfig,
  type LoadConfigOptions,
  type LoadedConfig,
  loadConfig,
  type MetricsConfig,
  type OnDemandSection,
  type PreMutatingToolConfig,
  type RetentionConfig,
  type ScheduleEntry,
  type ServerConfig,
  type SnapshotConfig,
} from './config/config.js';
export {
  backendSettingsFromConfig,
  checkNatsUrl,
  defaultRecipients,
  natsOptionsFromConfig,
  repoFromConfig,
  retentionPolicyFromConfig,
  retentionWorkerOptionsFromConfig,
  type StoreOverrides,
  scheduleFromConfig,
  snapshotRedactDefault,
  snapshotterOptionsFromConfig,
} from './config/runtime.js';
export {
  generateSigningKey,
  loadSigningKey,
  loadTrustedKeys,
  type PublicSigningKey,
  parsePublicKey,
  parseSigningKey,
  type SigningKey,
} from './crypto/sign.js';
export { DIFF_PATCH_MAX_BYTES, type DiffRequest, type SnapshotDiff } from './diff/diff.js';
export type { FileChange } from './diff/memdir.js';
export type { DatabaseDiff, SchemaChange, TableDiff } from './diff/sqlite.js';
export { natsPublisherFromConfig } from './events/from-config.js';
export {
  MemoryMutationPublisher,
  type MemoryMutationPublisherOptions,
  type MutationHashes,
} from './events/mutation.js';
export { NatsEventPublisher, type NatsPublisherOptions } from './events/nats.js';
export { LifecycleEventsObserver } from './events/observer.js';
export {
  type CreatedEvent,
  createdEvent,
  type DeletedEvent,
  deletedEvent,
  type GcEvent,
  type GcEventReport,
  gcEvent,
  type LifecycleEvent,
  type LifecycleKind,
  MUTATION_OPS,
  MUTATION_SCOPES,
  type MutationEvent,
  type MutationOp,
  type MutationScope,
  mutationEvent,
  type RestoredEvent,
  restoredEvent,
} from './events/payloads.js';
export { type EventPublisher, NoopPublisher, type PublisherStats } from './events/publisher.js';
export {
  ALL_AGENTS_TOKEN,
  DEFAULT_PREFIXES,
  gcSubject,
  LIFECYCLE_SUBJECT_PREFIX,
  lifecycleSubject,
  MUTATION_SUBJECT_PREFIX,
  mutationSubject,
  type SubjectPrefixes,
} from './events/subjects.js';
export {
  ARTIFACT_KINDS,
  type ArtifactKind,
  BUNDLE_FORMAT,
  BUNDLE_FORMAT_SIGNED,
  BUNDLE_FORMAT_V1,
  CURRENT_SCHEMA,
  MANIFEST_VERSION,
  SIGNED_MANIFEST_VERSION,
} from './format/constants.js';
export { JsonNumber } from './format/json-number.js';
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
export { checkSignature, type SignatureCheck, type SignatureStatus } from './format/signature.js';
export {
  DURATION_BUCKETS_MS,
  LABEL_CAP,
  METRIC,
  type MeteredOperation,
  type MetricLabels,
  OVERFLOW_LABEL,
  SnapshotMetrics,
  type SnapshotMetricsOptions,
} from './metrics/metrics.js';
export { MetricsObserver } from './metrics/observer.js';
export { writeMetricsTextfile } from './metrics/textfile.js';
export * from './model/errors.js';
export {
  DEFAULT_TENANT,
  newSnapshotId,
  parseSnapshotId,
  validateAgentId,
  validateTenant,
} from './model/ids.js';
export { SNAPSHOT_KINDS, type SnapshotKind, snapshotKind } from './model/kind.js';
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
export {
  DEFAULT_POLICY,
  type Decision,
  isAnchor,
  PRE_MUTATING_TOOL_KIND,
  type RetentionPolicy,
  type RetentionPolicyReport,
} from './policy/retention.js';
export { type AgentOverview, fleetOverview, storeAgentPairs } from './snapshotter/fleet.js';
export {
  type AgentGcReport,
  type GcOptions,
  type GcPruneReport,
  type RetentionTickReport,
  RetentionWorker,
} from './snapshotter/gc.js';
export type { StoreBundleRequest, StoredBundle } from './snapshotter/import.js';
export type { ExportOptions, MemorySnapshotter, VerifyRequestOptions } from './snapshotter/interface.js';
export {
  LocalSnapshotter,
  type LocalSnapshotterOptions,
  type SnapshotterPolicies,
} from './snapshotter/local.js';
export type {
  MigratedBundle,
  MigrateOptions,
  MigrateReport,
  MigrateStep,
} from './snapshotter/migrate.js';
export { notifyObservers, type OperationObserver, type OperationRecord } from './snapshotter/observer.js';

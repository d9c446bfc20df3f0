// Owns the HTTP API's route table: each route parses its path, query and body, makes one library call
// (list, snapshot, verify, diff, ls/cat/find of a snapshot, export download, delete, restore, gc) and
// returns the library's JSON shape unchanged. Tenant: `?tenant=` or the `X-Nexo-Tenant` header (default
// `default`); the global routes (gc, fleet, schedule, activity, events) are scoped to or filtered by it
// when given, and a route that cannot honour a tenant refuses it (400). A restore runs only when the
// config allows it AND the NEXO_MEMORY_RESTORE_ALLOW gate is open (a dry run needs only the write
// token). Snapshots, restores and gc run on the activity board (their live progress: `GET /v1/events`). The console's routes: its static files (open, like /healthz:
// they hold no data), the token's rights, the fleet overview, an agent's retention preview (gc dry
// run) — every data route needs the token as the API does.

import { parseSince } from '../browse/since.js';
import { MAX_LS_ENTRIES } from '../browse/types.js';
import { DIFF_PATCH_MAX_BYTES } from '../diff/diff.js';
import {
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  RestoreRefusedError,
  RouteNotFoundError,
} from '../model/errors.js';
import { DEFAULT_TENANT, parseSnapshotId, validateTenant } from '../model/ids.js';
import type { SnapshotRequest } from '../model/types.js';
import { openDownload } from '../snapshotter/download.js';
import { overviewOf, storeAgentPairs } from '../snapshotter/fleet.js';
import { checkRestoreGate, restoreGateOpen } from '../snapshotter/gate.js';
import type { GcOptions, RetentionTickReport, RetentionWorker } from '../snapshotter/gc.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { monotonicNow } from '../util/long-timer.js';
import { PACKAGE_VERSION } from '../util/version.js';
import { type z, zod } from '../util/zod.js';
import { ActivityBoard, summarizeSnapshot } from './activity.js';
import { ClientErrors } from './client-errors.js';
import type { ConsoleAsset } from './console-assets.js';
import type { ApiRequest, Route } from './http.js';
import type { Scheduler } from './scheduler.js';
import type { OperationTracker } from './tracker.js';

export interface MetricsSource {
  contentType: string;
  render(): Promise<string>;
}

export interface ApiContext {
  snapshotter: LocalSnapshotter;
  tracker: OperationTracker;
  /** `server.allow_restore` of the config; restore also needs the NEXO_MEMORY_RESTORE_ALLOW gate. */
  allowRestore: boolean;
  /** `redact` of API snapshots whose body omits it (config `redaction.enabled`; default false: exact). */
  redactDefault?: boolean;
  /** `enabled: false` in the config: every route that writes the store is refused (403). */
  readOnly?: boolean;
  /** age identity file for encrypted bundles (verify, diff, restore). */
  identityPath?: string;
  metrics?: MetricsSource;
  retention?: { worker: RetentionWorker; options: GcOptions };
  scheduler?: Scheduler;
  /** Monotonic time (performance.now) the daemon started: its uptime, not stepped with the wall clock. */
  startedAt: number;
  /** Operations in progress and lately ended, their live feed, the last verify per agent (default: a new board). */
  activity?: ActivityBoard;
  /** The console's built files (`/`); none: `/` says the console is not built. */
  consoleAssets?: Map<string, ConsoleAsset>;
  /** What a client is told of the errors a gc report carries (client-errors.ts); the daemon's, shared. */
  clientErrors?: ClientErrors;
}

/**
 * A gc report as a client gets it: each error (an agent's, the prune's) in its client form with an
 * `error_id`, the whole text in the log under that id.
 */
function clientGcReport(errors: ClientErrors, r: RetentionTickReport, where: string): RetentionTickReport {
  const agents = r.agents.map((a) => {
    if (a.error === undefined) return a;
    const told = errors.reportText(a.error_code ?? 'INTERNAL', a.error, `${where} ${a.tenant}/${a.agent_id}`);
    return { ...a, error: told.message, error_id: told.error_id };
  });
  const p = r.prune;
  if (p?.status !== 'error') return { ...r, agents };
  const told = errors.reportText(p.error_code, p.error, `${where} prune`);
  return { ...r, agents, prune: { ...p, error: told.message, error_id: told.error_id } };
}

/** A scheduled agent is late once its last snapshot is this much older than its interval. */
export const SCHEDULE_GRACE_MS = 60_000;

// The request bodies' schemas (zod, loaded here: the daemon checks bodies from its first request on).
const b = zod();
const snapshotBody = b.strictObject({
  label: b.string().optional(),
  encrypt: b.array(b.string()).min(1).optional(),
  redact: b.boolean().optional(),
});
const restoreBody = b.strictObject({
  dry_run: b.boolean().optional(),
  auto_pre_snapshot: b.boolean().optional(),
  allow_redacted: b.boolean().optional(),
});
const gcBody = b.strictObject({ dry_run: b.boolean().optional() });
const deleteBody = b.strictObject({});

function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const keys = issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys : [];
  const where = ['body', ...issue.path.map(String), ...keys.slice(0, 1)].join('.');
  throw new InvalidInputError(
    `${where}: ${issue.code === 'unrecognized_keys' ? 'unknown key' : issue.message}`,
  );
}

/**
 * Query parameters: only the listed ones are accepted, each at most once. A parameter given twice
 * (`?tenant=a&tenant=b`) is refused, not read as its first value: a proxy or a gateway in front of the
 * daemon may act on another of the values (its last, all of them), and the two would then disagree on
 * which tenant, snapshot or path the request means. `tenant` is a parameter like the others: a route
 * lists it when it honours it (scopes or filters by it); on any other route a tenant, `?tenant=` or
 * the `X-Nexo-Tenant` header, is refused (stop 45: the global routes took it and answered for every
 * tenant, a gc swept them all).
 */
function query(req: ApiRequest, allowed: readonly string[]): URLSearchParams {
  const seen = new Set<string>();
  for (const k of req.query.keys()) {
    if (!allowed.includes(k)) throw new InvalidInputError(unknownParameter(k));
    if (seen.has(k))
      throw new InvalidInputError(
        `query parameter ${k} given ${req.query.getAll(k).length} times: give it once`,
      );
    seen.add(k);
  }
  if (!allowed.includes('tenant')) noTenantHeader(req);
  return req.query;
}

const unknownParameter = (k: string) =>
  k === 'tenant'
    ? 'unknown query parameter tenant: this route is not of one tenant (it answers the same for every tenant or for the whole daemon)'
    : `unknown query parameter ${k}`;

/** Refuses the X-Nexo-Tenant header on a route that does not honour a tenant (400, naming it). */
function noTenantHeader(req: ApiRequest): void {
  if (req.headers['x-nexo-tenant'] !== undefined)
    throw new InvalidInputError(
      'unknown header X-Nexo-Tenant: this route is not of one tenant (it answers the same for every tenant or for the whole daemon)',
    );
}

/**
 * The routes that read no query (`/healthz`, `/metrics`, the console's files): a tenant is refused there
 * too, by the query or the header; their other parameters are not read (a console link a mail or chat
 * tool rewrote with tracking parameters, a monitor's cache-buster: these routes are opened by tools the
 * operator does not write).
 */
function noTenant(req: ApiRequest): void {
  if (req.query.has('tenant')) throw new InvalidInputError(unknownParameter('tenant'));
  noTenantHeader(req);
}

function flag(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  if (v === null) return false;
  if (['', '1', 'true', 'yes'].includes(v.toLowerCase())) return true;
  if (['0', 'false', 'no'].includes(v.toLowerCase())) return false;
  throw new InvalidInputError(`query parameter ${name} must be true or false, got ${JSON.stringify(v)}`);
}

/** A non-negative integer query parameter, when given. */
function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (!/^\d{1,15}$/.test(v))
    throw new InvalidInputError(`query parameter ${name} must be a non-negative integer`);
  return Number(v);
}

function tenantOf(req: ApiRequest): string {
  return givenTenantOf(req) ?? DEFAULT_TENANT;
}

/** The tenant the request names (`?tenant=` or X-Nexo-Tenant, checked), or undefined when neither. */
function givenTenantOf(req: ApiRequest): string | undefined {
  const fromQuery = req.query.get('tenant') ?? undefined;
  const header = req.headers['x-nexo-tenant'];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  if (fromQuery !== undefined && fromHeader !== undefined && fromQuery !== fromHeader) {
    throw new InvalidInputError(
      `tenant given twice and differently: ?tenant=${fromQuery}, X-Nexo-Tenant: ${fromHeader}`,
    );
  }
  const given = fromQuery ?? fromHeader;
  return given === undefined ? undefined : validateTenant(given);
}

export function apiRoutes(ctx: ApiContext): Route[] {
  const routes = allRoutes(ctx);
  if (!ctx.readOnly) return routes;
  return routes.map((r) =>
    r.auth === 'write' && r.path !== '/v1/agents/:agent/snapshots/:id/export'
      ? {
          ...r,
          handle: async () => {
            throw new ForbiddenError('memory.snapshot.enabled is false: the API does not change the store');
          },
        }
      : r,
  );
}

function asset(ctx: ApiContext, name: string) {
  const a = ctx.consoleAssets?.get(name);
  if (!a) {
    throw new RouteNotFoundError(
      name === 'index.html' ? 'the web console is not built: run `npm run build`' : `no console file ${name}`,
    );
  }
  return {
    bytes: a.bytes,
    headers: {
      'content-type': a.contentType,
      'cache-control': name === 'index.html' ? 'no-store' : 'no-cache',
    },
  };
}

function allRoutes(ctx: ApiContext): Route[] {
  const s = ctx.snapshotter;
  const errors = ctx.clientErrors ?? new ClientErrors();
  const board = ctx.activity ?? new ActivityBoard(errors);
  const identityFile = () => (ctx.identityPath ? { decryptIdentity: ctx.identityPath } : {});
  /** The canonical id of the snapshot `ref` names (any UUID spelling, a prefix, `latest`); else `ref`. */
  const listedId = async (agent: string, tenant: string, ref: string): Promise<string> =>
    parseSnapshotId(ref) ??
    (await s.findSnapshot(agent, tenant, ref).then(
      (f) => (f.repository ? f.repository.id : f.bundle.id),
      () => ref,
    ));

  return [
    {
      method: 'GET',
      path: '/healthz',
      auth: 'open',
      handle: async (req) => {
        noTenant(req);
        return {
          json: {
            status: ctx.tracker.closed ? 'shutting_down' : 'ok',
            version: PACKAGE_VERSION,
            uptime_ms: Math.round(monotonicNow() - ctx.startedAt),
            in_flight: Math.max(0, ctx.tracker.inFlight - 1),
          },
        };
      },
    },
    {
      method: 'GET',
      path: '/metrics',
      auth: 'open',
      handle: async (req) => {
        noTenant(req);
        if (!ctx.metrics) throw new RouteNotFoundError('metrics are switched off in the config');
        return { text: await ctx.metrics.render(), contentType: ctx.metrics.contentType };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/snapshots',
      auth: 'read',
      handle: async (req) => {
        query(req, ['tenant']);
        return { json: await s.list(req.params.agent!, tenantOf(req)) };
      },
    },
    {
      method: 'POST',
      path: '/v1/agents/:agent/snapshots',
      auth: 'write',
      handle: async (req) => {
        query(req, ['tenant']);
        const body = parseBody(snapshotBody, req.body);
        const request: SnapshotRequest = {
          agentId: req.params.agent!,
          tenant: tenantOf(req),
          ...(body.label !== undefined ? { label: body.label } : {}),
          ...(body.encrypt ? { encrypt: body.encrypt } : {}),
          createdBy: 'api',
          redact: body.redact ?? ctx.redactDefault ?? false,
        };
        const meta = await board.track(
          { op: 'snapshot', source: 'api', agent_id: request.agentId, tenant: request.tenant! },
          (onProgress) => s.snapshot({ ...request, onProgress }),
          summarizeSnapshot,
        );
        return {
          status: 201,
          json: meta,
          headers: {
            location: `/v1/agents/${encodeURIComponent(meta.agent_id)}/snapshots/${meta.id}?tenant=${meta.tenant}`,
          },
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/snapshots/:id',
      auth: 'read',
      handle: async (req) => {
        query(req, ['tenant']);
        // a repository snapshot or a bundle, by id or unique prefix
        const found = await s.findSnapshot(req.params.agent!, tenantOf(req), req.params.id!);
        const id = found.repository ? found.repository.id : found.bundle.id;
        const meta = (await s.list(req.params.agent!, tenantOf(req))).find((m) => m.id === id);
        if (!meta) throw new NotFoundError(id, 'the bundle is unreadable (see verify)');
        return { json: meta };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/snapshots/:id/verify',
      auth: 'read',
      handle: async (req) => {
        const q = query(req, ['tenant', 'deep']);
        // The snapshotter's one trust rule (trusted keys, require_signature), as the CLI and MCP.
        const report = await s.verifySnapshot(req.params.agent!, tenantOf(req), req.params.id!, {
          deep: flag(q, 'deep'),
          ...identityFile(),
        });
        board.recordVerify(tenantOf(req), req.params.agent!, {
          // the id the snapshot is listed under, however the request spelled it (its case, a prefix,
          // `latest`): a report kept under another spelling would never match the listing, and the
          // fleet would drop its alert. A manifest that could not be read gives no snapshot_id.
          snapshot_id:
            report.snapshot_id ?? (await listedId(req.params.agent!, tenantOf(req), req.params.id!)),
          status: report.status,
          deep: flag(q, 'deep'),
          at_ms: Date.now(),
        });
        return { json: report };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/snapshots/:id/export',
      auth: 'write',
      handle: async (req) => {
        // what leaves the host is redacted unless ?redact=false (config redact_secrets_default)
        const q = query(req, ['tenant', 'redact']);
        const d = await openDownload(s, req.params.agent!, tenantOf(req), req.params.id!, {
          ...(q.has('redact') ? { redact: flag(q, 'redact') } : {}),
        });
        return {
          stream: d.stream,
          headers: {
            'content-type': d.encrypted ? 'application/age-encryption' : 'application/zstd',
            'content-length': String(d.size),
            'content-disposition': `attachment; filename="${d.name}"`,
            'x-nexo-snapshot-id': d.id,
            'x-nexo-redacted': String(d.redacted),
            'x-nexo-copy': d.copy,
            ...(d.sha256 ? { 'x-nexo-file-sha256': d.sha256 } : {}),
          },
        };
      },
    },
    {
      method: 'DELETE',
      path: '/v1/agents/:agent/snapshots/:id',
      auth: 'write',
      handle: async (req) => {
        query(req, ['tenant']);
        parseBody(deleteBody, req.body); // nothing, or {}: an unknown key is refused, not ignored
        return { json: await s.delete(req.params.agent!, tenantOf(req), req.params.id!) };
      },
    },
    {
      method: 'POST',
      path: '/v1/agents/:agent/snapshots/:id/restore',
      auth: 'write',
      handle: async (req) => {
        query(req, ['tenant']);
        const body = parseBody(restoreBody, req.body);
        const dryRun = body.dry_run === true;
        // A dry run changes nothing: any write token may preview; the restore itself is gated.
        if (!dryRun && !ctx.allowRestore) {
          throw new RestoreRefusedError(
            'restore over the HTTP API is disabled: set server.allow_restore: true in the config',
          );
        }
        if (!dryRun) checkRestoreGate();
        return {
          json: await board.track(
            {
              op: 'restore',
              source: 'api',
              agent_id: req.params.agent!,
              tenant: tenantOf(req),
              dry_run: dryRun,
            },
            (onProgress) =>
              s.restore({
                agentId: req.params.agent!,
                tenant: tenantOf(req),
                // one of the agent's snapshots by id or prefix: a repository snapshot or a bundle
                snapshot: req.params.id!,
                dryRun,
                autoPreSnapshot: body.auto_pre_snapshot ?? true,
                ...(body.allow_redacted ? { allowRedacted: true } : {}),
                ...identityFile(),
                onProgress,
              }),
            (r) => ({
              from: r.from,
              dry_run: r.dry_run,
              ...(r.pre_snapshot ? { pre_snapshot: r.pre_snapshot } : {}),
              components: r.components.filter((c) => c.action !== 'unchanged').length,
            }),
          ),
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/snapshots/:id/ls',
      auth: 'read',
      handle: async (req) => {
        // paged: a folder of 30,000 files is not one 4.9 MB answer (docs/browse.md)
        const q = query(req, ['tenant', 'path', 'limit', 'cursor']);
        const cursor = q.get('cursor');
        return {
          json: await s.ls(req.params.agent!, tenantOf(req), req.params.id!, q.get('path') ?? '', {
            limit: intParam(q, 'limit') ?? MAX_LS_ENTRIES,
            ...(cursor !== null ? { cursor } : {}),
            ...identityFile(),
          }),
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/snapshots/:id/cat',
      auth: 'read',
      handle: async (req) => {
        // values are shown redacted: the API never offers them as stored (as diff)
        const q = query(req, ['tenant', 'path', 'offset', 'limit']);
        const path = q.get('path');
        if (path === null)
          throw new InvalidInputError('cat needs ?path=<memdir/…|sqlite/<db>[/<table>]|state/<key>>');
        const offset = intParam(q, 'offset');
        const limit = intParam(q, 'limit');
        return {
          json: await s.cat(req.params.agent!, tenantOf(req), req.params.id!, path, {
            ...(offset !== undefined ? { offset } : {}),
            ...(limit !== undefined ? { limit } : {}),
            ...identityFile(),
          }),
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/find',
      auth: 'read',
      handle: async (req) => {
        const q = query(req, ['tenant', 'text', 'regex', 'since']);
        const text = q.get('text');
        const regex = q.get('regex');
        const since = q.get('since');
        return {
          json: await s.find({
            agentId: req.params.agent!,
            tenant: tenantOf(req),
            ...(text !== null ? { text } : {}),
            ...(regex !== null ? { regex } : {}),
            ...(since !== null ? { sinceMs: parseSince(since) } : {}),
            ...identityFile(),
          }),
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/diff',
      auth: 'read',
      handle: async (req) => {
        const q = query(req, ['tenant', 'a', 'b', 'detail']);
        const a = q.get('a');
        const b = q.get('b');
        if (!a || !b) throw new InvalidInputError('diff needs ?a=<id|prefix|live>&b=<id|prefix|live>');
        return {
          json: await s.diff({
            agentId: req.params.agent!,
            tenant: tenantOf(req),
            a,
            b,
            detail: flag(q, 'detail'),
            // each patch bounded as `cat` is: one huge memory file cannot make a response of many MB
            maxPatchBytes: DIFF_PATCH_MAX_BYTES,
            ...identityFile(),
          }),
        };
      },
    },
    {
      method: 'POST',
      path: '/v1/gc',
      auth: 'write',
      handle: async (req) => {
        query(req, ['tenant']);
        const body = parseBody(gcBody, req.body);
        // with a tenant: that tenant's agents only, as `gc --all --tenant T` sweeps them (the prune
        // that ends a sweep is the repository's, as the CLI's); none: every tenant
        const tenant = givenTenantOf(req);
        if (!ctx.retention) throw new ForbiddenError('the retention worker is switched off in the config');
        const retention = ctx.retention;
        const report = await board.track(
          {
            op: 'gc',
            source: 'api',
            ...(tenant !== undefined ? { tenant } : {}),
            dry_run: body.dry_run === true,
          },
          () =>
            body.dry_run
              ? s.gc({ ...retention.options, ...(tenant !== undefined ? { tenant } : {}), dryRun: true })
              : retention.worker.tick(tenant),
          (r) => ({ bundles_deleted: r.bundles_deleted, bytes_freed: r.bytes_freed, errors: r.errors }),
        );
        return { json: clientGcReport(errors, report, 'POST /v1/gc') };
      },
    },
    {
      method: 'GET',
      path: '/',
      auth: 'open',
      handle: async (req) => {
        noTenant(req);
        return asset(ctx, 'index.html');
      },
    },
    {
      method: 'GET',
      path: '/assets/:file',
      auth: 'open',
      handle: async (req) => {
        noTenant(req);
        return asset(ctx, req.params.file!);
      },
    },
    {
      method: 'GET',
      path: '/v1/rights',
      auth: 'read',
      handle: async (req) => {
        query(req, []);
        const write = req.rights === 'write' && !ctx.readOnly;
        const gate = restoreGateOpen();
        return {
          json: {
            rights: req.rights,
            write,
            // the restore button: the write token, server.allow_restore and the environment's gate
            restore: write && ctx.allowRestore && gate,
            ...(write && !(ctx.allowRestore && gate)
              ? {
                  restore_refused: !ctx.allowRestore
                    ? 'server.allow_restore is false in the config'
                    : 'NEXO_MEMORY_RESTORE_ALLOW is not set in the daemon environment',
                }
              : {}),
            read_only: ctx.readOnly === true,
            retention: ctx.retention !== undefined,
            version: PACKAGE_VERSION,
          },
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/fleet',
      auth: 'read',
      handle: async (req) => {
        query(req, ['tenant']);
        const tenant = givenTenantOf(req); // none: every tenant
        const schedule = ctx.scheduler?.status() ?? [];
        const pairs = await storeAgentPairs(s, tenant);
        for (const e of schedule)
          if ((!tenant || e.tenant === tenant) && !pairs.some(([t, a]) => t === e.tenant && a === e.agent_id))
            pairs.push([e.tenant, e.agent_id]);
        const now = Date.now();
        const agents = [];
        for (const [t, a] of pairs) {
          const metas = await s.list(a, t);
          const o = overviewOf(a, t, metas);
          const sched = schedule.find((e) => e.tenant === t && e.agent_id === a);
          const verify = board.lastVerify(t, a);
          const alerts: Array<{ code: string; message: string }> = [];
          if (sched) {
            // On the daemon's monotonic record of its runs: snapshot dates are wall-clock times, and
            // after the clock was stepped back a day and put right they said "no snapshot for a day"
            // two minutes after a run (stop 46).
            const age = ctx.scheduler?.sinceLastSnapshotMs(t, a, o.last_snapshot_at_ms);
            if (age !== undefined && age > sched.interval_secs * 1000 + SCHEDULE_GRACE_MS)
              alerts.push({
                code: 'late',
                message: `no snapshot for ${Math.round(age / 1000)} s (scheduled every ${sched.interval_secs} s)`,
              });
            if (sched.last_error)
              alerts.push({
                code: 'schedule_failed',
                message: `the last scheduled run failed: ${sched.last_error.message} (${sched.last_error.code}, error id ${sched.last_error.error_id})`,
              });
          }
          // every snapshot whose newest verify failed, not only the one verified last
          for (const v of board.failedVerifies(t, a, new Set(metas.map((m) => m.id))))
            alerts.push({ code: v.status, message: `snapshot ${v.snapshot_id} verified ${v.status}` });
          agents.push({
            ...o,
            ...(verify ? { last_verify: verify } : {}),
            ...(sched ? { schedule: sched } : {}),
            alerts,
          });
        }
        return { json: { now_ms: now, agents } };
      },
    },
    {
      method: 'GET',
      path: '/v1/agents/:agent/retention',
      auth: 'read',
      handle: async (req) => {
        query(req, ['tenant']);
        // What the next sweep would remove: the configured sweep as a dry run, for this agent only.
        if (!ctx.retention) return { json: { enabled: false } };
        const r = clientGcReport(
          errors,
          await s.gc({
            ...ctx.retention.options,
            agentId: req.params.agent!,
            tenant: tenantOf(req),
            dryRun: true,
          }),
          `GET ${req.path}`,
        );
        const mine = r.agents[0];
        return {
          json: {
            enabled: true,
            policy: r.policy,
            decisions: mine?.decisions ?? [],
            ...(mine?.skipped ? { skipped: mine.skipped } : {}),
            ...(mine?.error ? { error: mine.error, error_id: mine.error_id } : {}),
          },
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/activity',
      auth: 'read',
      handle: async (req) => {
        query(req, ['tenant']);
        const tenant = givenTenantOf(req); // none: every tenant's and the daemon's (a gc of every tenant)
        return { json: { running: board.running(tenant), recent: board.recent(tenant) } };
      },
    },
    {
      method: 'GET',
      path: '/v1/events',
      auth: 'read',
      handle: async (req) => {
        query(req, ['tenant']);
        return {
          stream: board.eventStream(givenTenantOf(req)),
          headers: {
            'content-type': 'text/event-stream; charset=utf-8',
            'cache-control': 'no-store',
            'x-accel-buffering': 'no',
          },
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/schedule',
      auth: 'read',
      handle: async (req) => {
        query(req, ['tenant']);
        const tenant = givenTenantOf(req); // none: every tenant's entries
        return {
          json: (ctx.scheduler?.status() ?? []).filter((e) => tenant === undefined || e.tenant === tenant),
        };
      },
    },
  ];
}

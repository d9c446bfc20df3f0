// A snapshot page: its metadata and components (HEAD, databases with rows per table, state), verify
// and deep verify with the report, download (write rights), the restore preview (a dry run, write
// rights) and the restore itself (only where the server allows restore, after typing the agent's
// name), and the browser of the memory as it was (memdir files, tables, state; read-asof routes).
// The route may name `latest` or a prefix: every action acts on the snapshot the page loaded (its
// full id), never on what that name means when the button is clicked.

import { useState } from 'preact/hooks';
import { apiPath, call, download, get, seg } from '../api.js';
import { bytes, kindOf, shownName, shownText, when } from '../format.js';
import { useLoad } from '../hooks.js';
import { html } from '../html.js';
import type { LsResult, RestoreReport, Rights, SnapshotMeta, VerifyReport } from '../types.js';
import { Browser } from './browser.js';
import { agentHref, DiffLink, diffHref, ErrorNote, Flags, Loading } from './common.js';

/** What a download was, as the server's `X-Nexo-Copy` says. */
const COPY_KINDS: Record<string, string> = {
  redacted: 'a copy with its secrets replaced',
  already_redacted: 'the snapshot as stored, redacted when it was taken',
  encrypted: 'the encrypted bundle as stored (not redacted: only the identity reads it)',
  exact: 'the snapshot as stored, secrets included',
};

function VerifyView({ r }: { r: VerifyReport }) {
  return html`<div id="verify-report" class=${`report status-${r.status}`}>
    <p>Status: <strong class=${`status-${r.status}`}>${r.status}</strong> — ${r.artifacts_checked} of ${r.artifacts_total} artifacts, ${bytes(r.bytes_checked)} checked; manifest ${r.manifest_ok ? 'ok' : 'NOT ok'}${r.signature ? `, signature ${r.signature.status}` : ''}</p>
    ${r.problems.length ? html`<ul class="problems">${r.problems.map((p) => html`<li><code>${p.code}</code> ${shownName(p.message)}${p.path ? html` (<code>${shownName(p.path)}</code>)` : null}</li>`)}</ul>` : null}
    ${r.not_checked.length ? html`<p class="muted">Not checked: ${r.not_checked.map((n) => shownName(`${n.check} (${n.reason})`)).join('; ')}</p>` : null}
    ${r.deep ? html`<details open><summary>deep checks</summary><pre>${shownText(JSON.stringify(r.deep, null, 2))}</pre></details>` : null}
  </div>`;
}

function RestoreView({ r }: { r: RestoreReport }) {
  return html`<div id="restore-report" class="report">
    <p>${r.dry_run ? 'A restore would change:' : `Restored from ${r.from}${r.pre_snapshot ? ` (pre-restore snapshot ${r.pre_snapshot})` : ''}:`}</p>
    <table class="grid"><thead><tr><th>component</th><th>action</th><th>detail</th></tr></thead><tbody>
      ${r.components.map(
        (c) => html`<tr><td>${shownName(c.component)}</td><td>${c.action}</td><td>
          ${c.rows ? Object.entries(c.rows).map(([t, n]) => html`<div>${shownName(t)}: ${n.old} → ${n.new} rows</div>`) : null}
          ${c.head ? html`<div>HEAD ${c.head.old?.slice(0, 10) ?? '—'} → ${c.head.new?.slice(0, 10) ?? '—'}</div>` : null}
          ${c.files ? html`<div>files: +${c.files.added.length} −${c.files.removed.length} ~${c.files.changed.length}</div>` : null}
        </td></tr>`,
      )}
    </tbody></table>
    ${r.warnings.map((w) => html`<p class="warning">${shownName(w)}</p>`)}
  </div>`;
}

function Components({ base, tenant, meta }: { base: string; tenant: string; meta: SnapshotMeta }) {
  const comps = useLoad(async () => {
    const ls = (path: string) => get<LsResult>(apiPath(`${base}/ls`, { tenant, path }));
    const [dbs, state, memdir] = await Promise.all([ls('sqlite'), ls('state'), ls('memdir')]);
    const tables = await Promise.all(
      dbs.entries.map(async (d) => ({ db: d, tables: (await ls(d.path)).entries })),
    );
    return { tables, state: state.entries, memdir: memdir.total };
  }, [base, tenant]);
  return html`<section id="components">
    <h2>Components</h2>
    <p>HEAD <code>${meta.git_oid ?? '—'}</code></p>
    <${ErrorNote} error=${comps.error} />
    ${
      comps.data
        ? html`<table class="grid"><thead><tr><th>database</th><th>table</th><th>rows</th></tr></thead><tbody>
          ${comps.data.tables.flatMap(({ db, tables }) =>
            tables.map(
              (t) =>
                html`<tr><td>${shownName(db.name)}</td><td>${shownName(t.name)}</td><td class="num">${t.rows ?? '—'}</td></tr>`,
            ),
          )}
        </tbody></table>
        <p>memdir: ${comps.data.memdir} entries at the top · state: ${comps.data.state.map((s) => shownName(s.name)).join(', ') || 'none'}</p>`
        : null
    }
  </section>`;
}

export function Snapshot({
  tenant,
  agent,
  id,
  rights,
}: {
  tenant: string;
  agent: string;
  id: string;
  rights: Rights;
}) {
  const agentBase = `/v1/agents/${seg(agent)}`;
  const meta = useLoad(
    () => get<SnapshotMeta>(apiPath(`${agentBase}/snapshots/${seg(id)}`, { tenant })),
    [agentBase, id, tenant],
  );
  const m = meta.data;
  // the snapshot shown, by its id: what `latest` or a prefix named when the page loaded it
  const base = m ? `${agentBase}/snapshots/${seg(m.id)}` : undefined;
  const [verify, setVerify] = useState<VerifyReport | undefined>();
  const [restore, setRestore] = useState<RestoreReport | undefined>();
  const [confirmName, setConfirmName] = useState('');
  const [busy, setBusy] = useState<string | undefined>();
  const [err, setErr] = useState<Error | undefined>();
  const [downloaded, setDownloaded] = useState<string | undefined>();

  const run = async (what: string, f: () => Promise<void>) => {
    setBusy(what);
    setErr(undefined);
    try {
      await f();
    } catch (e) {
      setErr(e as Error);
    } finally {
      setBusy(undefined);
    }
  };
  const doVerify = (at: string, deep: boolean) =>
    run('verify', async () =>
      setVerify(await get<VerifyReport>(apiPath(`${at}/verify`, { tenant, deep: deep || undefined }))),
    );
  const doRestore = (at: string, dry: boolean) =>
    run('restore', async () =>
      setRestore(await call<RestoreReport>('POST', apiPath(`${at}/restore`, { tenant }), { dry_run: dry })),
    );
  const off = !!busy || !base;

  return html`<div>
    <p><a href=${agentHref(tenant, agent)}>← ${agent}</a></p>
    <h1>Snapshot <code id="snapshot-id">${m?.id ?? id}</code></h1>
    <${ErrorNote} error=${meta.error} />
    <${Loading} when=${meta.loading && !m} />
    ${
      m
        ? html`<dl class="meta">
          <dt>taken</dt><dd>${when(m.created_at_ms)}</dd>
          <dt>kind</dt><dd>${kindOf(m.created_by)} <span class="muted" id="snapshot-created-by">(${shownName(m.created_by ?? 'unknown')})</span></dd>
          <dt>label</dt><dd class="label" id="snapshot-label">${shownName(m.label ?? '')}</dd>
          <dt>size</dt><dd>${bytes(m.bundle_size_bytes)}${m.added_bytes !== undefined ? ` (added ${bytes(m.added_bytes)})` : ''}</dd>
          <dt>flags</dt><dd><${Flags} m=${m} /></dd>
        </dl>`
        : null
    }
    <div class="actions">
      <button id="verify" disabled=${off} onClick=${() => base && doVerify(base, false)}>Verify</button>
      <button id="verify-deep" disabled=${off} onClick=${() => base && doVerify(base, true)}>Deep verify</button>
      ${m ? html`<${DiffLink} id="diff-live" href=${diffHref(tenant, agent, m.id, 'live')}>Diff with live</${DiffLink}>` : null}
      ${
        rights.write && m && base
          ? html`<button id="download" disabled=${off} onClick=${() =>
              run('download', async () =>
                // redaction asked for explicitly: the server's default may be the exact copy
                setDownloaded(
                  await download(apiPath(`${base}/export`, { tenant, redact: 'true' }), `${m.id}.tar.zst`),
                ),
              )}>Download (redacted)</button>
            <button id="restore-preview" disabled=${off} onClick=${() => doRestore(base, true)}>Restore preview (dry run)</button>`
          : null
      }
    </div>
    ${busy ? html`<p class="muted">${busy}…</p>` : null}
    ${downloaded ? html`<p class="muted" id="downloaded">Downloaded: ${COPY_KINDS[downloaded] ?? downloaded}.</p>` : null}
    <${ErrorNote} error=${err} />
    ${verify ? html`<${VerifyView} r=${verify} />` : null}
    ${restore ? html`<${RestoreView} r=${restore} />` : null}
    ${
      rights.restore
        ? html`<form class="restore" id="restore-form" onSubmit=${(e: Event) => {
            e.preventDefault();
            if (confirmName === agent && base) void doRestore(base, false);
          }}>
          <h2>Restore agent <span class="name">${agent}</span> to this snapshot</h2>
          <p>This replaces the agent's memory (a pre-restore snapshot is taken first). Type the agent's name to confirm.</p>
          <input id="restore-confirm" aria-label="agent name" value=${confirmName} onInput=${(e: Event) => setConfirmName((e.target as HTMLInputElement).value)} />
          <button id="restore" class="danger" type="submit" disabled=${confirmName !== agent || off}>Restore ${agent}</button>
        </form>`
        : rights.write && rights.restore_refused
          ? html`<p class="muted">Restore is off on this server: ${rights.restore_refused}.</p>`
          : null
    }
    ${m && base ? html`<${Components} base=${base} tenant=${tenant} meta=${m} />` : null}
    ${base ? html`<${Browser} base=${base} tenant=${tenant} />` : null}
  </div>`;
}

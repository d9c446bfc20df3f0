// The diff page between two snapshots, or a snapshot and live: commits between, every file with its
// unified diff, rows added/removed/changed per table with samples, and state — the API's diff with
// detail (values shown redacted, as the API always does; what memory holds with marks for its control and
// bidi characters, format.ts). The diff starts at once only when a click of
// the console opened the page (clicked.ts); opened from its address alone, the page says what the diff
// would do and waits for its button (a live side closes the agent's write gate: stop 51).

import { useState } from 'preact/hooks';
import { apiPath, get, seg } from '../api.js';
import { markClicked } from '../clicked.js';
import { bytes, shortId, shownName, shownText } from '../format.js';
import { useLoad } from '../hooks.js';
import { html } from '../html.js';
import type { SnapshotDiff, SnapshotMeta } from '../types.js';
import { agentHref, diffHref, ErrorNote, Loading } from './common.js';

/** Lines of one patch the page renders (a span each); the rest are counted, not drawn. */
export const PATCH_LINES_SHOWN = 2000;

function Patch({ file }: { file: SnapshotDiff['files'][number] }) {
  const lines = file.patch!.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const more = lines.length - PATCH_LINES_SHOWN;
  return html`<pre class="patch">${lines.slice(0, PATCH_LINES_SHOWN).map((l) => {
    const cls = l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : l.startsWith('@@') ? 'hunk' : '';
    return html`<span class=${cls}>${`${shownText(l)}\n`}</span>`;
  })}</pre>
    ${more > 0 ? html`<p class="muted patch-more">… ${more} more lines not shown</p>` : null}
    ${file.patch_truncated ? html`<p class="muted patch-cut">the patch is cut: the API sends the first ${bytes(new TextEncoder().encode(file.patch!).length)} of ${bytes(file.patch_bytes ?? 0)} (${file.insertions} lines added, ${file.deletions} removed in all)</p>` : null}`;
}

const sample = (rows: unknown[]) => shownText(rows.map((r) => JSON.stringify(r)).join('\n'));

function Side({
  name,
  value,
  metas,
  onPick,
}: {
  name: string;
  value: string;
  metas: SnapshotMeta[];
  onPick: (v: string) => void;
}) {
  // the URL may name a snapshot by a prefix of its id (as the API takes it): the one it names is picked
  const want = value.toLowerCase().replaceAll('-', '');
  const picked = value === 'live' ? 'live' : metas.find((m) => m.id.replaceAll('-', '').startsWith(want))?.id;
  return html`<label>${name}
    <select onChange=${(e: Event) => onPick((e.target as HTMLSelectElement).value)}>
      <option value="live" selected=${picked === 'live'}>live</option>
      ${metas.map((m) => html`<option value=${m.id} selected=${m.id === picked}>${shortId(m.id)} ${shownName(m.label ?? '')}</option>`)}
    </select></label>`;
}

export function Diff({
  tenant,
  agent,
  a,
  b,
  clicked,
}: {
  tenant: string;
  agent: string;
  a: string;
  b: string;
  /** A click of the console opened this page (clicked.ts): the diff starts at once. */
  clicked: boolean;
}) {
  const base = `/v1/agents/${seg(agent)}`;
  const list = useLoad(() => get<SnapshotMeta[]>(apiPath(`${base}/snapshots`, { tenant })), [tenant, agent]);
  const [started, setStarted] = useState(clicked);
  const metas = list.data ?? [];
  const go = (x: string, y: string) => {
    const href = diffHref(tenant, agent, x, y);
    markClicked(href); // a pick in the page is the operator's: the new pair starts at once
    location.hash = href;
  };
  const live = [a, b].some((x) => x.trim().toLowerCase() === 'live');
  return html`<div>
    <p><a href=${agentHref(tenant, agent)}>← ${agent}</a></p>
    <h1>Diff</h1>
    <p class="inline">
      <${Side} name="A" value=${a} metas=${metas} onPick=${(v: string) => go(v, b)} />
      <${Side} name="B" value=${b} metas=${metas} onPick=${(v: string) => go(a, v)} />
    </p>
    ${
      started
        ? html`<${DiffResult} base=${base} tenant=${tenant} a=${a} b=${b} />`
        : html`<div id="diff-start">
          <p>This page was opened by its address: the diff has not started. It compares A with B${live ? ", reading the agent's live memory under its write gate (its memory writers wait while it is copied)" : ''}.</p>
          <button id="diff-run" onClick=${() => setStarted(true)}>Compare A → B</button>
        </div>`
    }
  </div>`;
}

/** The API's diff of the pair, asked for when mounted: only once the operator started it. */
function DiffResult({ base, tenant, a, b }: { base: string; tenant: string; a: string; b: string }) {
  const d = useLoad(
    () => get<SnapshotDiff>(apiPath(`${base}/diff`, { tenant, a, b, detail: true })),
    [base, tenant, a, b],
  );
  const r = d.data;
  return html`<div>
    <${ErrorNote} error=${d.error} />
    <${Loading} when=${d.loading} />
    ${
      r && !d.loading
        ? html`<div id="diff">
          <h2>History</h2>
          <p id="diff-git">${r.git_summary.commits_between} commits from A to B${r.git_summary.commits_reverse ? `, ${r.git_summary.commits_reverse} only in A` : ''} · ${r.git_summary.files_changed} files changed, +${r.git_summary.insertions} −${r.git_summary.deletions}</p>
          <h2>Tables</h2>
          <table class="grid" id="diff-tables">
            <thead><tr><th>database</th><th>table</th><th>rows A</th><th>rows B</th><th>added</th><th>removed</th><th>changed</th></tr></thead>
            <tbody>
              ${r.databases.flatMap((db) =>
                db.tables.map(
                  (t) => html`<tr data-table=${`${db.db}.${t.table}`}>
                    <td>${shownName(db.db)}</td><td>${shownName(t.table)}</td><td class="num">${t.rows_a}</td><td class="num">${t.rows_b}</td>
                    <td class="num added">${t.added}</td><td class="num removed">${t.removed}</td><td class="num changed">${t.changed}</td>
                  </tr>`,
                ),
              )}
            </tbody>
          </table>
          ${r.databases.flatMap((db) =>
            db.tables
              .filter(
                (t) => t.rows && (t.rows.added.length || t.rows.removed.length || t.rows.changed.length),
              )
              .map(
                (
                  t,
                ) => html`<details class="samples"><summary>${shownName(`${db.db}.${t.table}`)}: samples</summary>
                  ${t.rows!.added.length ? html`<h4>added</h4><pre>${sample(t.rows!.added)}</pre>` : null}
                  ${t.rows!.removed.length ? html`<h4>removed</h4><pre>${sample(t.rows!.removed)}</pre>` : null}
                  ${t.rows!.changed.length ? html`<h4>changed</h4><pre>${shownText(t.rows!.changed.map((c) => `- ${JSON.stringify(c.before)}\n+ ${JSON.stringify(c.after)}`).join('\n'))}</pre>` : null}
                </details>`,
              ),
          )}
          <h2>Files</h2>
          ${r.files.length === 0 ? html`<p class="muted">No file differs.</p>` : null}
          ${r.files.map(
            (f) => html`<details class="file" open=${r.files.length <= 5}>
              <summary>${f.old_path !== undefined ? html`<code>${shownName(f.old_path)}</code> → ` : null}<code>${shownName(f.path)}</code> ${f.status} +${f.insertions} −${f.deletions}</summary>
              ${f.binary ? html`<p class="muted">binary</p>` : f.patch ? html`<${Patch} file=${f} />` : null}
            </details>`,
          )}
          <h2>State</h2>
          <p>extract cursor ${r.state_summary.extract_cursor_changed ? 'changed' : 'unchanged'} · last dream run ${r.state_summary.last_dream_run_changed ? 'changed' : 'unchanged'}</p>
          ${r.state ? html`<pre>${shownText(JSON.stringify(r.state, null, 2))}</pre>` : null}
        </div>`
        : null
    }
  </div>`;
}

// An agent's timeline: its snapshots over time as a chart (one mark per snapshot, its height the bytes
// it added, its colour its kind, a ring when pinned, a cross when the next gc would remove it) and as a
// table; what the retention policy would remove next (the gc dry run); diff any two; with write rights
// take a snapshot now and delete one.

import { useState } from 'preact/hooks';
import { apiPath, call, get, seg } from '../api.js';
import { bytes, KINDS, kindOf, shortId, shownName, shownPinNote, when } from '../format.js';
import { useLoad } from '../hooks.js';
import { html } from '../html.js';
import type { Decision, Rights, SnapshotMeta } from '../types.js';
import { DiffLink, diffHref, ErrorNote, Flags, Loading, snapshotHref } from './common.js';

const W = 860;
const H = 220;
const PAD = { l: 76, r: 24, t: 16, b: 34 };

function Chart({
  metas,
  doomed,
  href,
}: {
  metas: SnapshotMeta[];
  doomed: Set<string>;
  href: (id: string) => string;
}) {
  if (metas.length === 0) return null;
  const t0 = Math.min(...metas.map((m) => m.created_at_ms));
  const t1 = Math.max(...metas.map((m) => m.created_at_ms));
  const span = Math.max(1, t1 - t0);
  // null: not known (drawn at 0, titled "?"), never the snapshot's size, which overstated it
  const added = (m: SnapshotMeta) => (m.added_bytes === undefined ? m.bundle_size_bytes : m.added_bytes);
  const top = Math.max(1, ...metas.map((m) => added(m) ?? 0));
  const x = (t: number) =>
    PAD.l + ((t - t0) / span) * (W - PAD.l - PAD.r) + (metas.length === 1 ? (W - PAD.l - PAD.r) / 2 : 0);
  const y = (b: number) => H - PAD.b - (Math.sqrt(b) / Math.sqrt(top)) * (H - PAD.t - PAD.b);
  const base = H - PAD.b;
  return html`<figure class="chart">
    <svg id="timeline-chart" viewBox=${`0 0 ${W} ${H}`} role="img" aria-label="snapshots over time">
      <line class="axis" x1=${PAD.l - 12} y1=${base} x2=${W - PAD.r} y2=${base} />
      <line class="axis" x1=${PAD.l - 12} y1=${PAD.t} x2=${PAD.l - 12} y2=${base} />
      <text class="tick" x=${PAD.l - 18} y=${PAD.t + 4} text-anchor="end">${bytes(top)}</text>
      <text class="tick" x=${PAD.l - 18} y=${base} text-anchor="end">0</text>
      <text class="tick" x=${PAD.l} y=${H - 10}>${when(t0)}</text>
      <text class="tick" x=${W - PAD.r} y=${H - 10} text-anchor="end">${when(t1)}</text>
      ${metas.map((m) => {
        const cx = x(m.created_at_ms);
        const cy = y(added(m) ?? 0);
        const kind = kindOf(m.created_by);
        return html`<a href=${href(m.id)} class="mark" data-id=${m.id}>
          <title>${`${when(m.created_at_ms)} · ${kind} · ${m.label !== undefined ? shownName(m.label) : '(no label)'} · added ${bytes(added(m))}${m.pinned ? ` · pinned${m.pin_note !== undefined ? `: ${shownPinNote(m.pin_note)}` : ''}` : ''}`}</title>
          <line class=${`stem kind-${kind}`} x1=${cx} y1=${base} x2=${cx} y2=${cy} />
          <circle class=${`dot kind-${kind}`} cx=${cx} cy=${cy} r="5" />
          ${m.pinned ? html`<circle class="pin-ring" cx=${cx} cy=${cy} r="9" />` : null}
          ${doomed.has(m.id) ? html`<path class="doomed" d=${`M${cx - 6} ${cy - 6}L${cx + 6} ${cy + 6}M${cx + 6} ${cy - 6}L${cx - 6} ${cy + 6}`} />` : null}
        </a>`;
      })}
    </svg>
    <figcaption class="legend">
      ${KINDS.map((k) => html`<span><svg viewBox="0 0 10 10" class="swatch"><circle class=${`dot kind-${k}`} cx="5" cy="5" r="4" /></svg>${k}</span>`)}
      <span>◯ pinned</span><span class="doomed-key">✕ next gc removes it</span>
      <span class="muted">height: bytes added (square-root scale)</span>
    </figcaption>
  </figure>`;
}

export function Agent({
  tenant,
  agent,
  rights,
  refresh,
}: {
  tenant: string;
  agent: string;
  rights: Rights;
  refresh: number;
}) {
  const base = `/v1/agents/${seg(agent)}`;
  const list = useLoad(
    () => get<SnapshotMeta[]>(apiPath(`${base}/snapshots`, { tenant })),
    [tenant, agent, refresh],
  );
  const retention = useLoad(
    () =>
      get<{ enabled: boolean; decisions?: Decision[]; skipped?: string }>(
        apiPath(`${base}/retention`, { tenant }),
      ),
    [tenant, agent, refresh],
  );
  const [a, setA] = useState<string | undefined>();
  const [b, setB] = useState<string | undefined>();
  const [label, setLabel] = useState('');
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState<Error | undefined>();
  const metas = list.data ?? [];
  const doomed = new Set(
    (retention.data?.decisions ?? []).filter((d) => d.action === 'delete').map((d) => d.id),
  );
  const href = (id: string) => snapshotHref(tenant, agent, id);

  const act = async (f: () => Promise<unknown>) => {
    setBusy(true);
    setActionError(undefined);
    try {
      await f();
      list.reload();
      retention.reload();
    } catch (e) {
      setActionError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const snapshotNow = () =>
    act(async () => {
      await call('POST', apiPath(`${base}/snapshots`, { tenant }), label ? { label } : {});
      setLabel(''); // a second click is a new snapshot, not the same label again
    });
  const remove = (m: SnapshotMeta) => {
    if (!confirm(`Delete snapshot ${m.id} of agent ${agent}? This cannot be undone.`)) return;
    void act(() => call('DELETE', apiPath(`${base}/snapshots/${seg(m.id)}`, { tenant })));
  };

  return html`<div>
    <h1>Agent <span class="name">${agent}</span> <small class="muted">tenant ${tenant}</small></h1>
    <${ErrorNote} error=${list.error} />
    <${Loading} when=${list.loading && !list.data} />
    ${
      list.data
        ? html`<p id="snapshot-count">${metas.length} snapshot${metas.length === 1 ? '' : 's'}</p>`
        : null
    }
    <${Chart} metas=${metas} doomed=${doomed} href=${href} />
    ${
      rights.write
        ? html`<form class="inline" id="snapshot-now" onSubmit=${(e: Event) => {
            e.preventDefault();
            void snapshotNow();
          }}>
          <input aria-label="label of the new snapshot" placeholder="label (optional)" value=${label} onInput=${(e: Event) => setLabel((e.target as HTMLInputElement).value)} />
          <button type="submit" disabled=${busy}>Take a snapshot now</button>
        </form>`
        : null
    }
    <${ErrorNote} error=${actionError} />
    <p class="inline">
      Compare: pick A and B in the table, then
      ${a && b ? html`<${DiffLink} id="diff-link" href=${diffHref(tenant, agent, a, b)}>diff A → B</${DiffLink}>` : html`<span class="muted">(two picked)</span>`}
      ${a ? html`<${DiffLink} href=${diffHref(tenant, agent, a, 'live')}>diff A → live</${DiffLink}>` : null}
    </p>
    <table class="grid" id="timeline">
      <thead><tr><th>A</th><th>B</th><th>taken</th><th>id</th><th>kind</th><th>label</th><th>added</th><th>flags</th><th>next gc</th>${rights.write ? html`<th></th>` : null}</tr></thead>
      <tbody>
        ${metas.map(
          (m) => html`<tr data-id=${m.id}>
            <td><input type="radio" name="pick-a" aria-label=${`pick ${shortId(m.id)} as A`} checked=${a === m.id} onChange=${() => setA(m.id)} /></td>
            <td><input type="radio" name="pick-b" aria-label=${`pick ${shortId(m.id)} as B`} checked=${b === m.id} onChange=${() => setB(m.id)} /></td>
            <td>${when(m.created_at_ms)}</td>
            <td><a href=${href(m.id)}><code>${shortId(m.id)}</code></a></td>
            <td><span class=${`kind kind-${kindOf(m.created_by)}`}>${kindOf(m.created_by)}</span></td>
            <td class="label">${shownName(m.label ?? '')}</td>
            <td class="num">${bytes(m.added_bytes === undefined ? m.bundle_size_bytes : m.added_bytes)}</td>
            <td><${Flags} m=${m} /></td>
            <td>${doomed.has(m.id) ? html`<span class="doomed-key">removes</span>` : ''}</td>
            ${rights.write ? html`<td><button class="danger delete" aria-label=${`delete snapshot ${shortId(m.id)}`} disabled=${busy} onClick=${() => remove(m)}>delete</button></td>` : null}
          </tr>`,
        )}
      </tbody>
    </table>
    <h2>What the next gc would remove</h2>
    <${ErrorNote} error=${retention.error} />
    ${retention.data && !retention.data.enabled ? html`<p class="muted">The retention worker is off in the daemon's config.</p>` : null}
    ${retention.data?.skipped ? html`<p class="muted">Not swept now: ${retention.data.skipped}</p>` : null}
    ${
      retention.data?.enabled
        ? doomed.size === 0
          ? html`<p id="gc-preview">Nothing: every snapshot is kept.</p>`
          : html`<ul id="gc-preview">${(retention.data.decisions ?? [])
              .filter((d) => d.action === 'delete')
              .map(
                (d) =>
                  html`<li><code>${shortId(d.id)}</code> ${when(d.created_at_ms)} <span class="label">${shownName(d.label ?? '')}</span> — ${d.because ?? ''}</li>`,
              )}</ul>`
        : null
    }
  </div>`;
}

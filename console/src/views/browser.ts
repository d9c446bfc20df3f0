// The memory browser of one snapshot: the tree as it was (memdir directories and files, databases and
// tables, state values) and the selected entry — a memory file rendered as markdown (or as text), a
// table's rows page by page. Everything shown is the snapshot's content, so it is hostile: it is only
// ever given to Preact as text (the markdown renderer builds elements, never HTML), its control,
// bidirectional and invisible characters as marks (format.ts shownName, shownText).

import { useState } from 'preact/hooks';
import { apiPath, get } from '../api.js';
import { bytes, shownName, shownText } from '../format.js';
import { useLoad } from '../hooks.js';
import { html } from '../html.js';
import { renderMarkdown } from '../markdown.js';
import type { CatResult, Cell, LsEntry, LsResult } from '../types.js';
import { ErrorNote, Loading } from './common.js';

const PAGE = 50;

/** A row's value as drawn in its cell: a text through shownName, as every string memory controls. */
function cell(v: Cell): string {
  if (v === null) return 'NULL';
  if (typeof v !== 'object') return shownName(String(v));
  if (v.blob_base64 !== undefined) return `<blob ${v.size_bytes ?? '?'} bytes>`;
  return `${shownName(v.text ?? '')}${v.truncated ? '…' : ''}`;
}

function Content({ base, tenant, entry }: { base: string; tenant: string; entry: LsEntry }) {
  const [offset, setOffset] = useState(0);
  const [asText, setAsText] = useState(false);
  const isTable = entry.type === 'table';
  const r = useLoad(
    () =>
      get<CatResult>(
        apiPath(`${base}/cat`, { tenant, path: entry.path, ...(isTable ? { limit: PAGE, offset } : {}) }),
      ),
    [base, tenant, entry.path, offset],
  );
  const c = r.data;
  return html`<div class="content" id="browser-content">
    <h3><code>${shownName(entry.path)}</code></h3>
    <${ErrorNote} error=${r.error} />
    <${Loading} when=${r.loading} />
    ${
      c?.kind === 'file'
        ? c.binary
          ? html`<p class="muted">binary file, ${bytes(c.size_bytes)}</p>`
          : html`<div>
            ${entry.path.endsWith('.md') ? html`<label><input type="checkbox" checked=${asText} onChange=${() => setAsText(!asText)} /> show as text</label>` : null}
            ${entry.path.endsWith('.md') && !asText ? renderMarkdown(c.content ?? '') : html`<pre class="file-text">${shownText(c.content ?? '')}</pre>`}
            ${c.truncated ? html`<p class="muted">(first ${bytes(c.length)} of ${bytes(c.size_bytes)})</p>` : null}
          </div>`
        : null
    }
    ${
      c?.kind === 'table'
        ? html`<div>
          <p>rows ${c.total_rows === 0 ? 0 : c.offset + 1}–${c.offset + c.rows.length} of ${c.total_rows}
            <button disabled=${c.offset === 0} onClick=${() => setOffset(Math.max(0, offset - PAGE))}>previous</button>
            <button disabled=${!c.truncated} onClick=${() => setOffset(offset + PAGE)}>next</button></p>
          <div class="scroll"><table class="grid rows" id="table-rows">
            <thead><tr>${c.columns.map((k) => html`<th>${shownName(k)}</th>`)}</tr></thead>
            <tbody>${c.rows.map((row) => html`<tr>${c.columns.map((k) => html`<td>${cell(row[k] ?? null)}</td>`)}</tr>`)}</tbody>
          </table></div>
        </div>`
        : null
    }
    ${c?.kind === 'database' ? html`<p>${c.tables.map((t) => `${shownName(t.table)}: ${t.total_rows} rows`).join(' · ')}</p>` : null}
  </div>`;
}

/** Entries of a folder the API sends per page (its maximum), drawn at first; each "show more" adds a page. */
export const TREE_ENTRIES_SHOWN = 1000;

/** The pages after the first loaded for one folder (`key`: which), and the cursor of the next. */
interface MorePages {
  key: string;
  entries: LsEntry[];
  next: string | undefined;
}

export function Browser({ base, tenant }: { base: string; tenant: string }) {
  const [path, setPath] = useState('');
  const [open, setOpen] = useState<LsEntry | undefined>();
  // a folder of 30,000 files comes a page of 1,000 at a time: the first here, the others on request
  const ls = useLoad(
    () => get<LsResult>(apiPath(`${base}/ls`, { tenant, path, limit: TREE_ENTRIES_SHOWN })),
    [base, tenant, path],
  );
  const key = `${base}\n${tenant}\n${path}`;
  const [more, setMore] = useState<MorePages | undefined>();
  const [moreBusy, setMoreBusy] = useState(false);
  const [moreError, setMoreError] = useState<Error | undefined>();
  // the first page of the folder shown (not of the one before, while the new one loads)
  const first = ls.data?.path === path ? ls.data : undefined;
  const later = more?.key === key ? more : undefined;
  const entries = first ? [...first.entries, ...(later?.entries ?? [])] : [];
  const next = later ? later.next : first?.next_cursor;
  const left = first ? first.total - entries.length : 0;
  const showMore = async () => {
    if (next === undefined) return;
    setMoreBusy(true);
    setMoreError(undefined);
    try {
      const r = await get<LsResult>(
        apiPath(`${base}/ls`, { tenant, path, limit: TREE_ENTRIES_SHOWN, cursor: next }),
      );
      // kept under the folder it is of: a click elsewhere meanwhile does not mix folders
      setMore({ key, entries: [...(later?.entries ?? []), ...r.entries], next: r.next_cursor });
    } catch (e) {
      setMoreError(e as Error);
    } finally {
      setMoreBusy(false);
    }
  };
  const go = (to: string) => {
    setPath(to);
    setMore(undefined);
    setMoreError(undefined);
    setOpen(undefined);
  };
  const parts = path === '' ? [] : path.split('/');
  const pick = (e: LsEntry) => {
    if (e.type === 'dir' || e.type === 'database') go(e.path);
    else setOpen(e);
  };
  return html`<section id="browser">
    <h2>Memory as of this snapshot</h2>
    <p class="crumbs">
      <button class="link" onClick=${() => go('')}>/</button>
      ${parts.map(
        (p, i) =>
          html`<span> / </span><button class="link" onClick=${() => go(parts.slice(0, i + 1).join('/'))}>${shownName(p)}</button>`,
      )}
    </p>
    <${ErrorNote} error=${ls.error} />
    <div class="browser">
      <ul class="tree" id="browser-tree">
        ${entries.map(
          (e) => html`<li class=${`entry entry-${e.type}`}>
            <button class="link" data-path=${e.path} onClick=${() => pick(e)}>${shownName(e.name) || '⟨empty name⟩'}${e.type === 'dir' || e.type === 'database' ? '/' : ''}</button>
            <span class="muted"> ${e.rows !== undefined ? `${e.rows} rows` : e.size_bytes !== undefined ? bytes(e.size_bytes) : ''}</span>
          </li>`,
        )}
        ${
          left > 0 && next !== undefined
            ? html`<li class="muted tree-more">… ${left} more entries not shown
              <button class="link" disabled=${moreBusy} onClick=${() => void showMore()}>show ${Math.min(TREE_ENTRIES_SHOWN, left)} more</button>
              ${moreBusy ? ' loading…' : ''}</li>`
            : null
        }
      </ul>
      <${ErrorNote} error=${moreError} />
      ${open ? html`<${Content} base=${base} tenant=${tenant} entry=${open} />` : null}
    </div>
  </section>`;
}

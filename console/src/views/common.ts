// Pieces every view uses: links between views (hash routes; a diff's marks its click), error and
// loading notes, flags.

import type { ComponentChildren } from 'preact';
import { ApiError, seg } from '../api.js';
import { markClicked } from '../clicked.js';
import { shownName, shownPinNote } from '../format.js';
import { html } from '../html.js';
import type { SnapshotMeta } from '../types.js';

export const agentHref = (tenant: string, agent: string): string => `#/agent/${seg(tenant)}/${seg(agent)}`;
export const snapshotHref = (tenant: string, agent: string, id: string): string =>
  `#/snapshot/${seg(tenant)}/${seg(agent)}/${seg(id)}`;
export const diffHref = (tenant: string, agent: string, a: string, b: string): string =>
  `#/diff/${seg(tenant)}/${seg(agent)}/${seg(a)}/${seg(b)}`;

/** A link to a diff: a click on it starts the diff (clicked.ts); the address alone never does. */
export function DiffLink({
  href,
  id,
  children,
}: {
  href: string;
  id?: string;
  children?: ComponentChildren;
}) {
  return html`<a class="button" id=${id} href=${href} onClick=${() => markClicked(href)}>${children}</a>`;
}

export function ErrorNote({ error }: { error?: Error }) {
  if (!error) return null;
  const id = error instanceof ApiError && error.errorId ? ` (error id ${error.errorId})` : '';
  // a message may quote what a bundle or memory holds (a label, a path): shown as every such string
  return html`<p class="error" role="alert">${shownName(error.message)}${id}</p>`;
}

export function Loading({ when }: { when: boolean }) {
  return when ? html`<p class="muted">loading…</p>` : null;
}

export function Section({ title, children }: { title: string; children?: ComponentChildren }) {
  return html`<section><h2>${title}</h2>${children}</section>`;
}

export function Flags({ m }: { m: SnapshotMeta }) {
  return html`<span class="flags">
    ${m.pinned ? html`<span class="flag" title="pinned: retention keeps it">pinned</span>` : null}
    ${
      m.pinned && m.pin_note !== undefined
        ? html`<span class="pin-note" title=${`pin note: ${shownName(m.pin_note)}`}>${shownPinNote(m.pin_note)}</span>`
        : null
    }
    ${m.signed_by ? html`<span class="flag" title=${`signed by ${m.signed_by}`}>signed</span>` : null}
    ${m.encrypted ? html`<span class="flag">encrypted</span>` : null}
    ${m.redactions_applied ? html`<span class="flag">redacted</span>` : null}
  </span>`;
}

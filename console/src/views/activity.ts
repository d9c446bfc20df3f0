// Live progress of the operations the daemon runs (snapshots, restores, gc), from `/v1/events`, and
// the result of each when it ends.

import { useEffect, useRef, useState } from 'preact/hooks';
import { followEvents } from '../api.js';
import { bytes, shownName, when } from '../format.js';
import { html } from '../html.js';
import type { Activity } from '../types.js';

export function ActivityPanel({ onEnded, onReconnect }: { onEnded: () => void; onReconnect?: () => void }) {
  const [running, setRunning] = useState<Activity[]>([]);
  const [recent, setRecent] = useState<Activity[]>([]);
  const [connected, setConnected] = useState(false);
  const reconnected = useRef(onReconnect);
  reconnected.current = onReconnect;
  useEffect(() => {
    const stop = new AbortController();
    // connected again after the feed was lost: the daemon may have restarted with other settings
    let lost = false;
    const onState = (up: boolean) => {
      setConnected(up);
      if (up && lost) reconnected.current?.();
      if (!up) lost = true;
    };
    void followEvents(
      ({ event, data }) => {
        if (event === 'snapshot') {
          const d = data as { running: Activity[]; recent: Activity[] };
          setRunning(d.running);
          setRecent(d.recent);
        } else if (event === 'started' || event === 'progress') {
          const a = data as Activity;
          setRunning((list) => [...list.filter((x) => x.id !== a.id), a]);
        } else if (event === 'ended') {
          const a = data as Activity;
          setRunning((list) => list.filter((x) => x.id !== a.id));
          setRecent((list) => [a, ...list.filter((x) => x.id !== a.id)].slice(0, 20));
          onEnded();
        }
      },
      onState,
      stop.signal,
    );
    return () => stop.abort();
  }, [onEnded]);
  const what = (a: Activity) =>
    shownName(
      `${a.op}${a.dry_run ? ' (dry run)' : ''} ${a.agent_id ?? ''} · ${a.source === 'other-process' ? `other process (pid ${a.pid} on ${a.host})` : a.source}`,
    );
  return html`<aside id="activity">
    <h2>Activity <span class=${connected ? 'ok' : 'muted'}>${connected ? '● live' : '○ offline'}</span></h2>
    ${running.length === 0 ? html`<p class="muted">Nothing running.</p>` : null}
    <ul id="activity-running">
      ${running.map(
        (a) => html`<li class="running" data-op=${a.op}>
          <div>${what(a)}</div>
          <div class="muted">${a.phase ?? (a.source === 'other-process' ? `since ${when(a.started_at_ms)}` : 'starting')} ${a.bytes !== undefined ? bytes(a.bytes) : ''}${a.total ? ` of ${bytes(a.total)}` : ''}</div>
          ${a.total ? html`<progress max=${a.total} value=${a.bytes ?? 0}></progress>` : html`<progress></progress>`}
        </li>`,
      )}
    </ul>
    <ul id="activity-recent">
      ${recent.map(
        (a) => html`<li class=${`ended ${a.outcome}`} data-op=${a.op}>
          <div>${a.outcome === 'ok' ? '✓' : a.outcome === 'failed' ? '✗' : '•'} ${what(a)}</div>
          <div class="muted">${a.ended_at_ms ? when(a.ended_at_ms) : ''} ${
            a.error
              ? `${a.error.code}: ${shownName(a.error.message)}${a.error.error_id ? ` (error id ${a.error.error_id})` : ''}`
              : a.result
                ? Object.entries(a.result)
                    .map(([k, v]) => `${k}=${shownName(String(v))}`)
                    .join(' ')
                : ''
          }</div>
        </li>`,
      )}
    </ul>
  </aside>`;
}

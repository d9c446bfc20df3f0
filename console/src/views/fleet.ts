// The fleet overview: every agent with its last snapshot's age, count, bytes stored and added, last
// verify, pins, and alerts (late schedule, failed scheduled run, damaged snapshot).

import { get } from '../api.js';
import { age, bytes, shownName } from '../format.js';
import { useLoad } from '../hooks.js';
import { html } from '../html.js';
import type { AgentOverview } from '../types.js';
import { agentHref, ErrorNote, Loading } from './common.js';

export function Fleet({ refresh }: { refresh: number }) {
  const r = useLoad(() => get<{ now_ms: number; agents: AgentOverview[] }>('/v1/fleet'), [refresh]);
  const agents = r.data?.agents ?? [];
  return html`<div>
    <h1>Fleet</h1>
    <${ErrorNote} error=${r.error} />
    <${Loading} when=${r.loading && !r.data} />
    ${r.data && agents.length === 0 ? html`<p class="muted">No agent has a snapshot yet.</p>` : null}
    ${
      agents.length > 0
        ? html`<table class="grid" id="fleet">
          <thead>
            <tr>
              <th>agent</th><th>tenant</th><th>snapshots</th><th>last snapshot</th><th title="bundle sizes; in a repository, what each listed snapshot added when it was taken (shared data counts once, where it was first stored)">added</th>
              <th>last added</th><th>pins</th><th>last verify</th><th>alerts</th>
            </tr>
          </thead>
          <tbody>
            ${agents.map(
              (a) => html`<tr class=${a.alerts.length ? 'alerting' : ''} data-agent=${a.agent_id}>
                <td><a href=${agentHref(a.tenant, a.agent_id)}>${a.agent_id}</a></td>
                <td>${a.tenant}</td>
                <td class="num">${a.snapshots}</td>
                <td>${age(a.last_snapshot_at_ms, r.data?.now_ms)}</td>
                <td class="num" title=${a.added_unknown ? `and ${a.added_unknown} snapshot(s) whose added bytes are not known` : ''}>${bytes(a.bytes_stored)}${a.added_unknown ? ' + ?' : ''}</td>
                <td class="num">${bytes(a.bytes_added_last)}</td>
                <td class="num">${a.pins}</td>
                <td>${a.last_verify ? html`<span class=${`status-${a.last_verify.status}`}>${a.last_verify.status}</span> ${a.last_verify.deep ? '(deep) ' : ''}${age(a.last_verify.at_ms)}` : html`<span class="muted">not this session</span>`}</td>
                <td>${a.alerts.length ? html`<ul class="alerts">${a.alerts.map((x) => html`<li class=${`alert-${x.code}`}>${shownName(x.message)}</li>`)}</ul>` : html`<span class="ok">none</span>`}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
        : null
    }
  </div>`;
}

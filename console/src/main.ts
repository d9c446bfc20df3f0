// The web console's entry: the login (the operator pastes the bearer token; it stays in this tab's
// sessionStorage), the shell (navigation, the live activity panel), and the hash router of the views.
// Write controls appear only when `/v1/rights` says the token may write; the rights are asked for again
// when a request is refused (401/403) and when the live feed reconnects (the daemon restarted, maybe
// with other tokens or settings), so the console never shows a button it cannot use.

import { render } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, get, getToken, onRefused, onUnauthorized, setToken } from './api.js';
import { takeClicked } from './clicked.js';
import { html } from './html.js';
import type { Rights } from './types.js';
import { ActivityPanel } from './views/activity.js';
import { Agent } from './views/agent.js';
import { Diff } from './views/diff.js';
import { Fleet } from './views/fleet.js';
import { Snapshot } from './views/snapshot.js';

type Route =
  | { view: 'fleet' }
  | { view: 'agent'; tenant: string; agent: string }
  | { view: 'snapshot'; tenant: string; agent: string; id: string }
  | { view: 'diff'; tenant: string; agent: string; a: string; b: string; clicked?: boolean };

function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  let p: string[];
  try {
    p = parts.map(decodeURIComponent);
  } catch {
    return { view: 'fleet' };
  }
  if (p[0] === 'agent' && p.length === 3) return { view: 'agent', tenant: p[1]!, agent: p[2]! };
  if (p[0] === 'snapshot' && p.length === 4)
    return { view: 'snapshot', tenant: p[1]!, agent: p[2]!, id: p[3]! };
  if (p[0] === 'diff' && p.length === 5)
    return { view: 'diff', tenant: p[1]!, agent: p[2]!, a: p[3]!, b: p[4]! };
  return { view: 'fleet' };
}

function Login({ onLogin, error }: { onLogin: (token: string) => void; error?: string }) {
  const [token, setTokenField] = useState('');
  return html`<main class="login">
    <h1>nexo-memory console</h1>
    <form id="login" onSubmit=${(e: Event) => {
      e.preventDefault();
      onLogin(token.trim());
    }}>
      <label>API token <input id="token" type="password" autocomplete="off" value=${token} onInput=${(e: Event) => setTokenField((e.target as HTMLInputElement).value)} /></label>
      <button type="submit">Log in</button>
      <p class="muted">The daemon's bearer token (server.token, or server.read_token to only read). It stays in this tab and is sent only in the Authorization header.</p>
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
    </form>
  </main>`;
}

function App() {
  const [rights, setRights] = useState<Rights | undefined>();
  const [loginError, setLoginError] = useState<string | undefined>();
  const [route, setRoute] = useState<Route>(parseRoute(location.hash));
  const [refresh, setRefresh] = useState(0);
  const bump = useCallback(() => setRefresh((n) => n + 1), []);

  // Attempts numbered as they start: only the newest one's answer counts. The page's own check of a
  // stored token can answer after the operator logged in; its 401 must not log the tab out.
  const attempts = useRef(0);
  const login = useCallback(async (token: string | undefined) => {
    const attempt = ++attempts.current;
    setToken(token);
    try {
      const rights = await get<Rights>('/v1/rights');
      if (attempt !== attempts.current) return;
      setRights(rights);
      setLoginError(undefined);
    } catch (e) {
      if (attempt !== attempts.current) return;
      setToken(undefined);
      setRights(undefined);
      if (token !== undefined || !(e instanceof ApiError && e.status === 401))
        setLoginError(
          e instanceof ApiError && e.status === 401 ? 'That token is not accepted.' : (e as Error).message,
        );
    }
  }, []);

  // The rights again, for the token in use; a 401 here is the handler below's (back to the login).
  const recheck = useCallback(async () => {
    const attempt = attempts.current;
    try {
      const now = await get<Rights>('/v1/rights');
      // for the login still in use only (not after a logout, or a login since)
      if (attempt === attempts.current) setRights((r) => (r ? now : r));
    } catch {
      // unreachable now: the feed shows offline, and the rights are asked for when it reconnects
    }
  }, []);

  useEffect(() => {
    onRefused(() => void recheck());
    return () => onRefused(undefined);
  }, [recheck]);

  useEffect(() => {
    // a token the daemon stopped accepting (changed, revoked): back to the login, with the reason
    onUnauthorized(() => {
      setToken(undefined);
      setRights(undefined);
      setLoginError('The daemon no longer accepts this token (it was changed or revoked). Log in again.');
    });
    void login(getToken());
    // a diff starts at once only when a click of this page led to it (clicked.ts): never from the URL
    // (the mark is taken at every change of route: one a click left behind, a Ctrl-click that opened
    // another tab say, never starts a later diff)
    // Each change is judged by its own address (the event's newURL), not by where the tab is when the
    // event is handled: two changes made at once (`#/`, then a diff's address) reach here after both
    // happened, and judged by location.hash the first would take a mark for the second.
    const onHash = (e: HashChangeEvent) => {
      const r = parseRoute(location.hash);
      const to = new URL(e.newURL).hash;
      const clicked = takeClicked(to) && to === location.hash;
      setRoute(r.view === 'diff' ? { ...r, clicked } : r);
    };
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, [login]);

  if (!rights) return html`<${Login} onLogin=${(t: string) => void login(t)} error=${loginError} />`;
  const logout = () => {
    setToken(undefined);
    setRights(undefined);
  };
  let view: unknown;
  switch (route.view) {
    case 'agent':
      view = html`<${Agent} tenant=${route.tenant} agent=${route.agent} rights=${rights} refresh=${refresh} />`;
      break;
    case 'snapshot':
      // keyed by the route: another snapshot's page starts anew (its loaded id, reports and confirm
      // box), so no action of the page can act on the snapshot shown before while the new one loads
      view = html`<${Snapshot} key=${`${route.tenant}/${route.agent}/${route.id}`} tenant=${route.tenant} agent=${route.agent} id=${route.id} rights=${rights} />`;
      break;
    case 'diff':
      // keyed by the route, as the snapshot page: another pair starts anew, and only by a click
      view = html`<${Diff} key=${`${route.tenant}/${route.agent}/${route.a}/${route.b}`} tenant=${route.tenant} agent=${route.agent} a=${route.a} b=${route.b} clicked=${route.clicked === true} />`;
      break;
    default:
      view = html`<${Fleet} refresh=${refresh} />`;
  }
  return html`<div class="shell">
    <header>
      <a href="#/" class="brand">nexo-memory</a>
      <a href="#/">Fleet</a>
      <span class="spacer"></span>
      <span id="rights" class=${rights.write ? 'rights-write' : 'rights-read'}>${rights.write ? 'read and write' : 'read only'}</span>
      <span class="muted">v${rights.version}</span>
      <button id="logout" onClick=${logout}>Log out</button>
    </header>
    <main>${view}</main>
    <${ActivityPanel} onEnded=${bump} onReconnect=${recheck} />
  </div>`;
}

render(html`<${App} />`, document.getElementById('app')!);

// What the operator started with a click in this page. Work that closes a gate or costs much (a diff:
// against live memory it closes the agent's write gate) never starts from a URL alone: another site
// can send the tab to any of the console's routes, and the tab's sessionStorage still holds the token
// (stop 51). A link or control of the console that opens such a view marks the route on its click;
// the router takes the mark when the route changes to it, and the view starts at once. A route opened
// any other way (an address typed or sent, a reload, another site's link) shows a button instead.

let marked: string | undefined;
let markedAt = 0;

/** A click's route changes at once; a mark older than this was left behind (a Ctrl-click, say). */
const MARK_LIFE_MS = 2000;

/**
 * A click on a link or control of the console that opens `href` (only the console's own scripts run
 * in its page: the CSP allows no other, so the handler that calls this is the operator's doing).
 */
export function markClicked(href: string): void {
  marked = href;
  markedAt = Date.now();
}

/** Whether the page went to `hash` by a click of its own; the mark is used up either way. */
export function takeClicked(hash: string): boolean {
  const clicked = marked !== undefined && marked === hash && Date.now() - markedAt < MARK_LIFE_MS;
  marked = undefined;
  return clicked;
}

// Test helper for the web console's browser tests: Debian's Chromium (chromium-headless-shell) launched by
// playwright-core (fails loudly when it is missing), a fresh page per test that records every dialog
// (a hostile label that ran script would open one) and every request URL (the token must never be in
// one), and the console's login.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

/**
 * Debian's chromium-headless-shell: Chromium's headless build (the same Blink and V8 as the chromium
 * package, without the browser's windowing layers), what Playwright itself runs headless; the console
 * tests took ~35 % less CPU in it than in the full chromium (docs/operations.md, "stop 63"). The full
 * browser is used where only it is installed (set NEXO_TEST_CHROMIUM to choose either).
 */
export const CHROMIUM_CANDIDATES = ['/usr/bin/chromium-headless-shell', '/usr/bin/chromium'];

export function chromiumPath(): string {
  const chosen = process.env.NEXO_TEST_CHROMIUM;
  if (chosen) return chosen;
  const found = CHROMIUM_CANDIDATES.find((p) => existsSync(p));
  assert.ok(
    found,
    `none of ${CHROMIUM_CANDIDATES.join(', ')} is installed: apt-get install chromium-headless-shell (.ci/run installs it)`,
  );
  return found;
}

export async function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath();
  assert.ok(existsSync(executablePath), `${executablePath} is missing`);
  // launch() gives the browser a fresh, temporary user-data directory of its own
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

export interface ConsolePage {
  context: BrowserContext;
  page: Page;
  /** Every URL the page requested (documents, scripts, API calls). */
  requests: string[];
  /** Every Set-Cookie header a response carried. */
  cookiesSet: string[];
}

/** A page in a fresh context (its own sessionStorage); dialogs are recorded into `dialogs` and dismissed. */
export async function newPage(browser: Browser, dialogs: string[]): Promise<ConsolePage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  // A loaded CI machine (native builds beside the suite) can keep a page waiting for the API for a
  // while: wait long rather than fail on a timing (no test asserts a duration).
  page.setDefaultTimeout(90_000);
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const requests: string[] = [];
  const cookiesSet: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('response', (r) => {
    const c = r.headers()['set-cookie'];
    if (c) cookiesSet.push(c);
  });
  return { context, page, requests, cookiesSet };
}

/** Opens the console at `url` and logs in with `token`. */
export async function login(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.fill('#token', token);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#rights');
}

/** Waits for `selector`; on a timeout, says what the page shows instead (an API error, still loading). */
export async function waitShowing(page: Page, selector: string): Promise<void> {
  await page
    .locator(selector)
    .first()
    .waitFor()
    .catch(async (err: unknown) => {
      throw new Error(
        `${String(err)}\nthe page shows: ${(await page.textContent('body').catch(() => ''))?.slice(0, 2000)}`,
      );
    });
}

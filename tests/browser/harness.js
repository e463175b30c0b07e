// Shared set-up for the browser tests: the real server binary on a free port, and Debian's
// Chromium driven by playwright-core (which never downloads a browser of its own).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..');
export const BINARY =
  process.env.WASM_PLAYGROUND_BIN ?? path.join(REPO, 'target', 'debug', 'wasm-playground');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Flags for a headless Chromium on a machine without internet access. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

const live = new Set();
// Whatever happens to the test process, it does not leave servers behind.
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** A TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `wasm-playground serve` on a free loopback port and waits until `GET /hello` answers.
 * Returns `{url, port, stop}`; `stop()` ends the process (and is safe to call twice).
 */
export async function startServer() {
  if (!existsSync(BINARY)) {
    throw new Error(`no server binary at ${BINARY}: run \`cargo build\` first`);
  }
  const port = await freePort();
  // The page's out-of-fuel example must run out of fuel before the 5 s time limit even on a
  // busy machine (where CPU-bound runs, at a lower OS priority, get little CPU): Cranelift code
  // only (the tiered default starts on Winch, about 2x slower) and a tenth of the default fuel.
  // Live runs get 5 s too (not 60), so the test of a program left waiting for input is short.
  // Every test of a file is one client (127.0.0.1) making many new programs in a minute: no
  // per-client rate (tests/fairness.rs covers it).
  const args = [
    'serve', '--addr', `127.0.0.1:${port}`, '--compiler', 'cranelift', '--fuel', '2000000000',
    '--live-timeout-ms', '5000', '--client-compile-rate', '0',
  ];
  const child = spawn(BINARY, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  live.add(child);
  const log = [];
  const keep = (chunk) => {
    log.push(...chunk.toString().split('\n').filter(Boolean));
    if (log.length > 200) log.splice(0, log.length - 200);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  exited.then(() => live.delete(child));

  const url = `http://127.0.0.1:${port}/`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };

  const deadline = Date.now() + 60_000;
  let exit = null;
  exited.then((e) => (exit = e));
  while (Date.now() < deadline) {
    if (exit) {
      throw new Error(`the server exited (${JSON.stringify(exit)}) before answering:\n${log.join('\n')}`);
    }
    try {
      const res = await fetch(url + 'hello');
      if (res.ok && (await res.text()) === 'Hello, world!\n') return { url, port, stop, log };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`the server did not answer GET /hello within 60 s:\n${log.join('\n')}`);
}

/** Debian's Chromium, headless, with a fresh profile (playwright makes a temporary one). */
export function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's package with \`apt-get install chromium\``);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/**
 * Starts one server and one browser before a test file's tests and stops both after them;
 * `ready(server, browser)` receives them once they are up.
 */
export function withServerAndBrowser(ready) {
  let server;
  let browser;
  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    ready(server, browser);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });
}

/** Opens the page in a new context (its own empty localStorage) and waits until it is ready. */
export async function openPage(browser, url, { viewport = { width: 1280, height: 800 }, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.pageErrors = errors;
  await page.goto(url);
  await page.waitForSelector('html[data-ready="true"]');
  return page;
}

/** A debug build on a busy 2-core machine can be slow to compile. */
export const TIMEOUT = 60_000;

/**
 * Runs `fn(view, arg)` in the page with the editor's CodeMirror view (web/codemirror.js's
 * EditorView, found from the editor's DOM) and returns its result.
 */
export function withView(page, fn, arg) {
  return page.evaluate(
    async ({ source, arg }) => {
      const { EditorView } = await import('./static/codemirror.js');
      const view = EditorView.findFromDOM(document.querySelector('.cm-editor'));
      return new Function('view', 'arg', `return (${source})(view, arg);`)(view, arg);
    },
    { source: fn.toString(), arg },
  );
}

/** Replaces the shown file's text, as a paste would (the caret ends up after it). */
export function setCode(page, code) {
  return withView(page, (view, text) => {
    view.dispatch({
      changes: { from: 0, to: view.state.doc.length, insert: text },
      selection: { anchor: text.length },
      userEvent: 'input.paste',
    });
  }, code);
}

/** The shown file's text. */
export const getCode = (page) => withView(page, (view) => view.state.doc.toString());

/** The caret's offset in the shown file. */
export const caret = (page) => withView(page, (view) => view.state.selection.main.head);

/** The line numbers that have a diagnostic marker of `level` (any level when null) in the lint gutter. */
export function markedLines(page, level = null) {
  return withView(page, (view, level) => {
    const markers = document.querySelectorAll(`.cm-gutter-lint .cm-lint-marker${level ? '-' + level : ''}`);
    return [...markers].map((m) => {
      const r = m.getBoundingClientRect();
      const block = view.lineBlockAtHeight(r.top + r.height / 2 - view.documentTop);
      return String(view.state.doc.lineAt(block.from).number);
    });
  }, level);
}

/** Starts a run (a click on Run, or a key) and waits until the page has shown its outcome. */
export async function runAndWait(page, how = 'click') {
  const runs = Number(await page.getAttribute('html', 'data-runs')) || 0;
  if (how === 'click') await page.click('#run');
  else await page.keyboard.press(how);
  await page.waitForSelector(`html[data-runs="${runs + 1}"]`, { timeout: TIMEOUT });
}

/** The text of the first element matching `selector`. */
export const text = (page, selector) => page.locator(selector).textContent();

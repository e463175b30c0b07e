// mdBook's own book.js (tests/browser/fixtures/mdbook/, copied unmodified from the mdbook crate)
// runs a book's code blocks against this service. The book page is served at a made-up origin;
// book.js's requests to https://play.rust-lang.org are passed to the local server: only the base
// URL changes, as it would for a book configured to use this playground.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { TIMEOUT, withServerAndBrowser } from './harness.js';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'mdbook');
const BOOK = 'http://book.test/';
const PLAYGROUND = 'https://play.rust-lang.org/';

let server;
let browser;
withServerAndBrowser((s, b) => ([server, browser] = [s, b]));

/** Opens the fixture book in a fresh context, wired to the local server; returns the page and the playground requests it made. */
async function openBook() {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const requests = [];
  await page.route(BOOK + '**', async (route) => {
    const name = new URL(route.request().url()).pathname.slice(1) || 'index.html';
    const type = name.endsWith('.js') ? 'text/javascript' : 'text/html';
    await route.fulfill({ body: await readFile(path.join(FIXTURE, path.basename(name))), contentType: type });
  });
  await page.route(PLAYGROUND + '**', async (route) => {
    const request = route.request();
    const target = server.url + request.url().slice(PLAYGROUND.length);
    requests.push(`${request.method()} ${request.url()}`);
    const response = await route.fetch({ url: target });
    await route.fulfill({ response });
  });
  await page.goto(BOOK);
  return { page, errors, requests };
}

describe('mdBook book.js against this server', { timeout: 5 * TIMEOUT }, () => {
  test('shows a program\'s output under its code block, and a compile error\'s message', async () => {
    const { page, errors, requests } = await openBook();
    const blocks = page.locator('pre.playground');
    assert.equal(await blocks.count(), 3);

    // book.js shows the Run buttons once the server has listed its crates (POST /meta/crates).
    for (let i = 0; i < 3; i++) {
      await blocks.nth(i).locator('button.play-button:not([hidden])').waitFor({ timeout: 15_000 });
    }

    // A program with its own main, edition 2021.
    await blocks.nth(0).locator('button.play-button').click();
    const result0 = blocks.nth(0).locator('code.result');
    await page.waitForFunction(
      (el) => el.innerText !== 'Running...',
      await result0.elementHandle(),
      { timeout: TIMEOUT },
    );
    assert.equal(await result0.innerText(), 'Hello from the book!\nsquares: [1, 4, 9, 16]\n');

    // Statements in mdBook's hidden `fn main`, no edition class (book.js sends 2015).
    await blocks.nth(1).locator('button.play-button').click();
    const result1 = blocks.nth(1).locator('code.result');
    await page.waitForFunction((el) => el.innerText !== 'Running...', await result1.elementHandle(), { timeout: TIMEOUT });
    assert.equal(await result1.innerText(), 'the answer is 42\n');

    // A compile error: the compiler's message is shown where the output would be.
    await blocks.nth(2).locator('button.play-button').click();
    const result2 = blocks.nth(2).locator('code.result');
    await page.waitForFunction((el) => el.innerText !== 'Running...', await result2.elementHandle(), { timeout: TIMEOUT });
    const shown = await result2.innerText();
    assert.match(shown, /^error\[E0308\]: mismatched types\n --> src\/main\.rs:2:18\n/);
    assert.match(shown, /expected `i32`, found `&str`/);

    assert.deepEqual(requests, [
      `POST ${PLAYGROUND}meta/crates`,
      `POST ${PLAYGROUND}evaluate.json`,
      `POST ${PLAYGROUND}evaluate.json`,
      `POST ${PLAYGROUND}evaluate.json`,
    ]);
    assert.deepEqual(errors, []);
    await page.context().close();
  });
});

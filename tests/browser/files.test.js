// Programs of several files on the page: the file list (add, rename, remove a module), running
// them (the list form of `code`), keeping them across reloads and sharing them.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  TIMEOUT, caret, getCode, markedLines, offsetOf, openPage, runAndWait, setCode, text, withServerAndBrowser,
} from './harness.js';

let server;
let browser;
withServerAndBrowser((s, b) => ([server, browser] = [s, b]));

const MAIN = 'mod greet;\n\nfn main() {\n    println!("{}", greet::hello("modules"));\n}\n';
const GREET = 'pub fn hello(name: &str) -> String {\n    format!("Hello, {name}!")\n}\n';

/** Adds module `name` with the file list's form and puts `code` in it. */
async function addModule(page, name, code) {
  await page.click('#file-add');
  assert.equal(await page.inputValue('#file-name'), 'src/');
  await page.fill('#file-name', name);
  await page.press('#file-name', 'Enter');
  assert.equal(await text(page, '.file[aria-current="true"]'), name);
  await setCode(page, code);
}

const fileNames = (page) => page.locator('#file-list .file').allTextContents();

describe('programs of several files', { timeout: 5 * TIMEOUT }, () => {
  test('adding a module, running the program, renaming and removing the module', async () => {
    const page = await openPage(browser, server.url);
    assert.deepEqual(await fileNames(page), ['src/main.rs']);
    assert.equal(await page.locator('#file-list .file-remove').count(), 0); // src/main.rs stays

    // A bad name is refused, with the reason.
    await page.click('#file-add');
    await page.fill('#file-name', 'src/Greet.rs');
    await page.press('#file-name', 'Enter');
    assert.equal(
      await text(page, '#file-error'),
      'A module is a path such as src/parser.rs or src/parser/lexer.rs: lower-case letters, digits and _, ending in .rs.',
    );
    await page.press('#file-name', 'Escape');
    assert.equal(await page.isHidden('#file-form'), true);

    await page.click('#file-add');
    await page.fill('#file-name', 'src/greet.rs');
    await page.press('#file-name', 'Enter');
    assert.equal(await getCode(page), '// The module `greet`: its parent declares it with `mod greet;`.\n');
    await setCode(page, GREET);
    assert.deepEqual(await fileNames(page), ['src/main.rs', 'src/greet.rs']);
    await page.click('.file[data-file="src/main.rs"]');
    await setCode(page, MAIN);

    // Each file keeps its own text and undo history.
    await page.click('.file[data-file="src/greet.rs"]');
    assert.equal(await getCode(page), GREET);

    const posts = [];
    page.on('websocket', (ws) => ws.on('framesent', (f) => posts.push(JSON.parse(f.payload))));
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), 'Hello, modules!\n');
    assert.deepEqual(posts[0].code, [
      { name: 'src/main.rs', content: MAIN },
      { name: 'src/greet.rs', content: GREET },
    ]);

    // Renamed to a folder module: main.rs names it anew, and it runs again.
    await page.click('.file-rename');
    assert.equal(await page.inputValue('#file-name'), 'src/greet.rs');
    await page.fill('#file-name', 'src/greetings/english.rs');
    await page.press('#file-name', 'Enter');
    assert.deepEqual(await fileNames(page), ['src/main.rs', 'src/greetings/english.rs']);
    await addModule(page, 'src/greetings.rs', 'pub mod english;\n');
    await page.click('.file[data-file="src/main.rs"]');
    await setCode(page, MAIN.replace('mod greet;', 'mod greetings;').replace('greet::hello', 'greetings::english::hello'));
    await runAndWait(page);
    assert.equal(await text(page, '#stdout'), 'Hello, modules!\n');

    // Kept across a reload, with the file that was shown.
    await page.click('.file[data-file="src/greetings.rs"]');
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    assert.deepEqual(await fileNames(page), ['src/main.rs', 'src/greetings/english.rs', 'src/greetings.rs']);
    assert.equal(await text(page, '.file[aria-current="true"]'), 'src/greetings.rs');
    assert.equal(await getCode(page), 'pub mod english;\n');

    // Removing asks first.
    page.once('dialog', (d) => d.accept());
    await page.click('.file-remove[aria-label="Remove src/greetings.rs"]');
    assert.deepEqual(await fileNames(page), ['src/main.rs', 'src/greetings/english.rs']);
    assert.equal(await text(page, '.file[aria-current="true"]'), 'src/main.rs');
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  test('an error in a module is marked in that module, where the server places it', async () => {
    const page = await openPage(browser, server.url);
    const util = '// Arithmetic helpers.\n\npub fn double(x: u32) -> u32 {\n    let twice: u32 = x as u64 * 2;\n    twice\n}\n';
    const main = 'mod util;\n\nfn main() {\n    println!("{}", util::double(21));\n}\n';
    await addModule(page, 'src/util/mod.rs', util);
    await page.click('.file[data-file="src/main.rs"]');
    await setCode(page, main);
    const compiled = [];
    page.on('websocket', (ws) => ws.on('framereceived', (f) => {
      const message = JSON.parse(f.payload);
      if (message.type === 'compiled') compiled.push(message);
    }));
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Compile error');
    // The server names the module's file; the page marks it from that.
    assert.deepEqual(compiled[0].diagnostics[0], {
      level: 'error', code: 'E0308', message: 'mismatched types',
      file: 'src/util/mod.rs', line: 4, column: 22, endLine: 4, endColumn: 34,
    });
    const item = page.locator('#diagnostics button').first();
    assert.equal(await item.locator('.d-loc').textContent(), 'src/util/mod.rs line 4:22');
    // src/main.rs, shown, has no mark.
    assert.deepEqual(await markedLines(page), []);
    await page.click('#code');
    await page.keyboard.press('Control+Home');
    await item.click();
    assert.equal(await text(page, '.file[aria-current="true"]'), 'src/util/mod.rs');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'code');
    assert.equal(await caret(page), offsetOf(util, 4, 22));
    assert.deepEqual(await markedLines(page, 'error'), ['4']);
    assert.deepEqual(await page.locator('.cm-lintRange-error').allTextContents(), ['x as u64 * 2']);
    assert.equal(await text(page, '.cm-line .lens-error'), 'mismatched types');
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  test('a shared link carries every file', async () => {
    const page = await openPage(browser, server.url);
    await addModule(page, 'src/greet.rs', GREET);
    await page.click('.file[data-file="src/main.rs"]');
    await setCode(page, MAIN);
    await page.click('#share');
    await page.waitForSelector('#share-panel:not([hidden])');
    const link = await page.inputValue('#share-url');
    assert.ok(link.startsWith(server.url + '#z='), link);

    const other = await openPage(browser, link);
    assert.deepEqual(await fileNames(other), ['src/main.rs', 'src/greet.rs']);
    assert.equal(await getCode(other), MAIN);
    await other.click('.file[data-file="src/greet.rs"]');
    assert.equal(await getCode(other), GREET);
    await runAndWait(other);
    assert.equal(await text(other, '#stdout'), 'Hello, modules!\n');
    await other.context().close();
    await page.context().close();
  });

  test('a short link stores the program on the server, and opens it', async () => {
    const page = await openPage(browser, server.url);
    await addModule(page, 'src/greet.rs', GREET);
    await page.click('.file[data-file="src/main.rs"]');
    await setCode(page, MAIN);
    await page.selectOption('#mode', 'release');
    await page.click('#share');
    await page.waitForSelector('#share-panel:not([hidden])');
    const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/meta/gist');
    await page.click('#short-link');
    const gist = await (await answer).json();
    assert.match(gist.id, /^[A-Za-z0-9_-]{10}$/);
    await page.waitForSelector('#share-status:has-text("Short link made")');
    const link = await page.inputValue('#share-url');
    assert.equal(link, `${server.url}?version=stable&mode=release&edition=2024&gist=${gist.id}`);
    assert.equal(await text(page, '#share-status'), 'Short link made: the program is stored on the server.');
    assert.deepEqual(gist.code, [
      { name: 'src/main.rs', content: MAIN },
      { name: 'src/greet.rs', content: GREET },
    ]);

    const other = await openPage(browser, link);
    assert.deepEqual(await fileNames(other), ['src/main.rs', 'src/greet.rs']);
    assert.equal(await getCode(other), MAIN);
    assert.equal(await other.inputValue('#mode'), 'release');
    await runAndWait(other);
    assert.equal(await text(other, '#stdout'), 'Hello, modules!\n');
    // Editing forgets the link in the address bar: a reload keeps the edit.
    await other.click('#code');
    await other.keyboard.type('// edited\n');
    assert.equal(await other.evaluate(() => location.href), server.url);
    await other.context().close();

    // An id the server does not know is explained, and the page keeps its own program.
    const lost = await openPage(browser, `${server.url}?gist=nosuchid00`);
    assert.equal(await text(lost, '#badge'), 'Broken link');
    assert.equal(
      await text(lost, '#notice-text'),
      'The program of this link (nosuchid00) could not be loaded (HTTP 404: no share with the id `nosuchid00`). Your last program is shown instead.',
    );
    assert.equal(await getCode(lost), 'fn main() {\n    println!("Hello, world!");\n}\n');
    await lost.context().close();
    await page.context().close();
  });
});

// End-to-end tests of the playground page: the real server binary, the real page, Debian's
// headless Chromium. Run with `./scripts/test-browser` from the repository root.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  TIMEOUT, caret, getCode, markedLines, offsetOf, openPage, runAndWait, setCode, startServer, text, withServerAndBrowser,
} from './harness.js';

let server;
let browser;
withServerAndBrowser((s, b) => ([server, browser] = [s, b]));

describe('the playground page', { timeout: 5 * TIMEOUT }, () => {
  test('is served with its assets and shows the default program', async () => {
    for (const file of ['app.js', 'editor.js', 'files.js', 'tools.js', 'codemirror.js']) {
      const res = await fetch(server.url + 'static/' + file);
      assert.equal(res.status, 200, file);
      assert.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8', file);
    }
    const missing = await fetch(server.url + 'static/nothing.js');
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), { error: 'no such file' });
    const page = await openPage(browser, server.url);
    assert.equal(await page.title(), 'Rust Playground');
    assert.equal(await getCode(page), 'fn main() {\n    println!("Hello, world!");\n}\n');
    assert.equal(await text(page, '#badge'), 'Ready');
    assert.equal(await page.getAttribute('#summary', 'aria-live'), 'polite');
    assert.equal(await page.getAttribute('#output', 'aria-live'), 'polite');
    assert.equal(await page.locator('.cm-content .cm-line').count(), 4);
    // The editor is a labelled text box for screen readers.
    assert.equal(await page.getAttribute('#code', 'role'), 'textbox');
    assert.equal(await page.getAttribute('#code', 'aria-label'), 'Rust source code');
    assert.equal(await page.getAttribute('#code', 'aria-multiline'), 'true');
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  test('highlights Rust', async () => {
    const page = await openPage(browser, server.url);
    await setCode(
      page,
      "#[derive(Debug)]\n/// Docs\nstruct Foo<'a> { s: &'a str }\n" +
        'fn main() { let r = r#"say "hi""#; let c = \'\\n\'; let n = 1_000u64 + 0xff; ' +
        'println!("{n}"); /* a /* nested */ comment */ let x = Some(2)?; }',
    );
    const tokens = await page.$$eval('.cm-content [class^="tok-"]', (spans) => spans.map((s) => `${s.className} ${s.textContent}`));
    assert.deepEqual(tokens, [
      "tok-attr #[derive(Debug)]",
      "tok-com /// Docs",
      "tok-kw struct",
      "tok-ty Foo",
      "tok-life 'a",
      "tok-life 'a",
      "tok-ty str",
      "tok-kw fn",
      "tok-fnd main",
      "tok-kw let",
      "tok-str r#\"say \"hi\"\"#",
      "tok-kw let",
      "tok-chr '\\n'",
      "tok-kw let",
      "tok-num 1_000u64",
      "tok-num 0xff",
      "tok-mac println",
      "tok-mac !",
      "tok-str \"{n}\"",
      "tok-com /* a /* nested */ comment */",
      "tok-kw let",
      "tok-fn Some",
      "tok-num 2",
    ]);
    await page.context().close();
  });

  test('runs a program typed in the editor and shows its output', async () => {
    const page = await openPage(browser, server.url);
    await page.click('#code');
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    // Typed as a person would: the editor closes brackets and quotes and indents after `{`.
    await page.keyboard.type('fn main() {');
    await page.keyboard.press('Enter');
    await page.keyboard.type('println!("Hello from the browser!");');
    assert.equal(await getCode(page), 'fn main() {\n    println!("Hello from the browser!");\n}');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#detail'), 'Exited with status 0');
    assert.equal(await text(page, '#stdout'), 'Hello from the browser!\n');
    assert.equal(await page.isHidden('#out-stderr'), true);
    assert.equal(await page.isHidden('#out-compiler'), true);
    assert.match(await text(page, '#meta'), /^Compile \d+ ms|^Compile \d+\.\d\d s/);
    assert.match(await text(page, '#meta'), /Fuel [\d,]+/);
    assert.equal(await text(page, '#run-label'), 'Run');
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  test('shows a compile error, marks its line and jumps to it', async () => {
    const page = await openPage(browser, server.url);
    const code = 'fn main() {\n    let x: i32 = "five";\n    println!("{x}");\n}\n';
    await setCode(page, code);
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Compile error');
    assert.equal(await text(page, '#detail'), 'Compilation failed');
    assert.equal(
      await text(page, '#explain'),
      'rustc rejected the program, so it did not run. Each error is listed below and marked in the editor: click one to jump to its line.',
    );
    assert.equal(await text(page, '#compiler-heading'), 'Compiler · 1 error');
    const item = page.locator('#diagnostics button').first();
    assert.equal(await item.locator('.d-level').textContent(), 'error[E0308]');
    assert.equal(await item.locator('.d-message').textContent(), 'mismatched types');
    assert.equal(await item.locator('.d-loc').textContent(), 'line 2:18');
    assert.match(await text(page, '#compiler-output'), /error\[E0308\]: mismatched types\n --> src\/main\.rs:2:18/);
    assert.equal(await page.isHidden('#out-stdout'), true);

    // The lint gutter marks line 2 only, the span is underlined, and the message ends the line.
    assert.deepEqual(await markedLines(page), ['2']);
    assert.deepEqual(await markedLines(page, 'error'), ['2']);
    assert.deepEqual(await page.locator('.cm-lintRange-error').allTextContents(), ['"five"']);
    assert.equal(await text(page, '.cm-line .lens-error'), 'mismatched types');
    // Hovering the marker shows the message.
    await page.hover('.cm-lint-marker-error');
    await page.waitForSelector('.cm-tooltip-lint');
    assert.equal(await text(page, '.cm-tooltip-lint .cm-diagnosticText'), 'mismatched types');

    // Put the caret elsewhere, then click the diagnostic: the caret lands on line 2, column 18.
    await page.click('#code');
    await page.keyboard.press('Control+End');
    await item.click();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'code');
    assert.equal(await caret(page), offsetOf(code, 2, 18));
    assert.equal(await text(page, '.cm-lineNumbers .cm-activeLineGutter'), '2');

    // The `--> src/main.rs:2:18` link in the full output jumps too.
    await page.keyboard.press('Control+Home');
    await page.click('#compiler-output .c-loc');
    assert.equal(await caret(page), offsetOf(code, 2, 18));

    // Markers follow the text: a new line above moves the marker to line 3.
    await page.keyboard.press('Control+Home');
    await page.keyboard.press('Enter');
    assert.deepEqual(await markedLines(page), ['3']);
    assert.deepEqual(await page.locator('.cm-lintRange-error').allTextContents(), ['"five"']);

    // Fixed and run again: the program runs, and no mark or message is left.
    await setCode(page, code.replace('"five"', '5'));
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), '5\n');
    assert.deepEqual(await markedLines(page), []);
    assert.equal(await page.locator('.cm-lintRange-error').count(), 0);
    assert.equal(await page.locator('.cm-line .lens-error').count(), 0);
    assert.equal(await page.isHidden('#out-compiler'), true);
    await page.context().close();
  });

  test('Ctrl+Enter runs the program from the editor', async () => {
    const page = await openPage(browser, server.url);
    const code = 'fn main() {\n    let v: Vec<u32> = (1..=5).collect();\n    println!("{:?}", v);\n}\n';
    await setCode(page, code);
    await page.focus('#code');
    await runAndWait(page, 'Control+Enter');
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), '[1, 2, 3, 4, 5]\n');
    // The shortcut did not also type a newline.
    assert.equal(await getCode(page), code);
    await page.context().close();
  });

  test('a shared link restores the program and its options', async () => {
    const page = await openPage(browser, server.url);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    const code = 'use std::io::Read;\n\nfn main() {\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    println!("{} é 🦀", s.trim().to_uppercase());\n}\n';
    await setCode(page, code);
    await page.selectOption('#edition', '2021');
    await page.selectOption('#mode', 'release');
    await page.click('#stdin-toggle');
    await page.fill('#stdin', 'shared input\n');
    await page.click('#share');
    await page.waitForSelector('#share-panel:not([hidden])');
    const link = await page.inputValue('#share-url');
    assert.ok(link.startsWith(server.url + '#z='), link);
    assert.equal(await page.evaluate(() => location.href), link);
    await page.click('#copy-link');
    await page.waitForSelector('#share-status:not(:empty)');
    assert.equal(await text(page, '#share-status'), `Link copied (${link.length} characters).`);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link);

    // A fresh browser context has no saved program: everything comes from the link.
    const other = await openPage(browser, link);
    assert.equal(await getCode(other), code);
    assert.equal(await other.inputValue('#edition'), '2021');
    assert.equal(await other.inputValue('#mode'), 'release');
    assert.equal(await other.inputValue('#stdin'), 'shared input\n');
    assert.equal(await other.isVisible('#stdin-panel'), true);
    await runAndWait(other);
    assert.equal(await text(other, '#stdout'), 'SHARED INPUT é 🦀\n');
    // Editing forgets the now stale link in the address bar.
    await other.click('#code');
    await other.keyboard.type('// edited\n');
    assert.equal(await other.evaluate(() => location.href), server.url);
    await other.context().close();
    await page.context().close();
  });

  test('opening a link keeps the program it replaces', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, 'fn main() {\n    println!("shared");\n}\n');
    await page.click('#share');
    await page.waitForSelector('#share-panel:not([hidden])');
    const link = await page.inputValue('#share-url');
    await page.click('#share-close');
    await setCode(page, 'fn main() {\n    println!("mine");\n}\n');
    assert.equal(await page.evaluate(() => location.href), server.url);
    // Same page, new fragment: the page follows the link.
    await page.goto(link);
    await page.waitForFunction(() => document.getElementById('code').textContent.includes('shared'));
    assert.equal(
      await text(page, '#notice-text'),
      'You opened a shared program. The program you had before is kept in this browser.',
    );
    await page.click('#restore');
    assert.equal(await getCode(page), 'fn main() {\n    println!("mine");\n}\n');
    assert.equal(await page.isHidden('#notice'), true);
    await page.context().close();
  });

  test('the program is kept across reloads', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, 'fn main() {\n    println!("kept");\n}\n');
    await page.selectOption('#mode', 'release');
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    assert.equal(await getCode(page), 'fn main() {\n    println!("kept");\n}\n');
    assert.equal(await page.inputValue('#mode'), 'release');
    await page.context().close();
  });

  test('the stdin example reads its input from the stdin panel', async () => {
    const page = await openPage(browser, server.url);
    await page.selectOption('#examples', 'stdin');
    assert.equal(await page.isVisible('#stdin-panel'), true);
    assert.equal(await page.inputValue('#stdin'), '3 4 5\n10 twenty 30\n');
    assert.equal(await page.inputValue('#examples'), '');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), 'read 5 numbers\nsum  = 52\nmean = 10.40\n');
    assert.equal(await text(page, '#stderr'), 'skipping "twenty": not a number\n');
    // Loading an example can be undone in the editor.
    await page.focus('#code');
    await page.keyboard.press('Control+Z');
    assert.equal(await getCode(page), 'fn main() {\n    println!("Hello, world!");\n}\n');
    await page.context().close();
  });

  test('a panic and running out of fuel are explained', async () => {
    const page = await openPage(browser, server.url);
    await page.selectOption('#examples', 'panic');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Panicked');
    assert.equal(await text(page, '#detail'), 'Exited with status 101');
    assert.equal(
      await text(page, '#explain'),
      'The program panicked: the panic message and where it happened are in the standard error below.',
    );
    assert.equal(await text(page, '#stdout'), 'reading numbers[5]...\n');
    assert.match(await text(page, '#stderr'), /^\nthread 'main' \(1\) panicked at src\/main\.rs:6:27:\nindex out of bounds: the len is 3 but the index is 5\n/);

    await page.selectOption('#examples', 'fuel');
    assert.equal(await page.inputValue('#mode'), 'release');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Out of fuel');
    assert.match(await text(page, '#detail'), /^Ran out of fuel after \d+ units$/);
    assert.match(await text(page, '#explain'), /^The program used up its fuel/);
    await page.context().close();
  });

  test('editing keys: Tab, Shift+Tab, auto-indent, pairs, comments', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, '');
    await page.focus('#code');
    const kb = page.keyboard;
    await kb.type('fn f(x: u8) -> u8 {');
    await kb.press('Enter');
    await kb.type('if x > 1 {');
    await kb.press('Enter');
    await kb.type('x');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x\n    }\n}');
    // Shift+Tab dedents the line, Tab indents it back.
    await kb.press('Shift+Tab');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n    x\n    }\n}');
    await kb.press('Home');
    await kb.press('Tab');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x\n    }\n}');
    // Tab elsewhere inserts spaces up to the next multiple of four columns.
    await kb.press('End');
    await kb.press('Tab');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x   \n    }\n}');
    await kb.press('Control+Z');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x\n    }\n}');
    // A selection over several lines is indented and dedented as a block.
    await kb.press('Control+A');
    await kb.press('Tab');
    assert.equal(await getCode(page), '    fn f(x: u8) -> u8 {\n        if x > 1 {\n            x\n        }\n    }');
    await kb.press('Shift+Tab');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x\n    }\n}');
    // Ctrl+/ comments out the selected lines, and back.
    await kb.press('Control+/');
    assert.equal(await getCode(page), '// fn f(x: u8) -> u8 {\n//     if x > 1 {\n//         x\n//     }\n// }');
    await kb.press('Control+/');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x\n    }\n}');
    // Backspace between a fresh pair removes both halves; undo works through it all.
    await kb.press('Control+End');
    await kb.press('Enter');
    await kb.type('[');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x\n    }\n}\n[]');
    await kb.press('Backspace');
    assert.equal(await getCode(page), 'fn f(x: u8) -> u8 {\n    if x > 1 {\n        x\n    }\n}\n');
    // Escape, then Tab, leaves the editor for the next control.
    await kb.press('Escape');
    await kb.press('Tab');
    assert.notEqual(await page.evaluate(() => document.activeElement.id), 'code');
    await page.context().close();
  });

  test('a busy server (503) is explained, with a countdown to retry', async () => {
    const page = await openPage(browser, server.url);
    // A busy server refuses a live run before compiling it; the page then asks POST execute,
    // whose answer carries the status and Retry-After.
    await page.routeWebSocket('**/live', (ws) =>
      ws.onMessage(() => {
        ws.send(JSON.stringify({ type: 'compiling' }));
        ws.send(JSON.stringify({ type: 'error', error: 'the server is busy (every compile slot is taken); retry in 3 s' }));
      }),
    );
    await page.route('**/execute', (route) =>
      route.fulfill({
        status: 503,
        headers: { 'content-type': 'application/json', 'retry-after': '3' },
        body: JSON.stringify({ error: 'too many programs are running' }),
      }),
    );
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Server busy');
    assert.equal(await text(page, '#detail'), 'The server is busy; it asks to try again in 3 s.');
    assert.equal(
      await text(page, '#notice-text'),
      'The server is running as many programs as it can right now, so it did not take this one. Your program is unchanged. (Server: too many programs are running)',
    );
    assert.equal(await text(page, '#retry'), 'Try again (3 s)');
    assert.equal(await page.isDisabled('#retry'), true);
    await page.waitForSelector('#retry:not([disabled])', { timeout: 6000 });
    assert.equal(await text(page, '#retry'), 'Try again');
    await page.context().close();
  });

  test('an error answer (413) shows the server message', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, 'fn main() {}\n' + '// padding\n'.repeat(14000));
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Too large');
    assert.equal(await text(page, '#detail'), 'The program or its input is over the size limit.');
    assert.match(await text(page, '#notice-text'), /^HTTP 413: `code` is \d+ bytes; the limit is \d+ bytes$/);
    assert.equal(await page.isHidden('#retry'), true);
    await page.context().close();
  });

  test('the Crates panel lists the offered crates, and a program uses one', async () => {
    const page = await openPage(browser, server.url);
    assert.equal(await page.isHidden('#crates-panel'), true);
    await page.click('#crates-toggle');
    assert.equal(await page.getAttribute('#crates-toggle', 'aria-expanded'), 'true');
    const items = page.locator('#crates-list li');
    await items.nth(34).waitFor();
    assert.equal(await items.count(), 35);
    const shown = await items.allInnerTexts();
    assert.ok(shown.includes('rand 0.10.4'), shown.join(', '));
    assert.ok(shown.includes('md5 0.10.6'), shown.join(', '));
    assert.ok(shown.includes('rayon 1.12.0'), shown.join(', '));
    assert.equal(await items.filter({ hasText: 'md5' }).getAttribute('title'), 'the md-5 package');
    await page.focus('#crates-close');
    await page.keyboard.press('Escape');
    assert.equal(await page.isHidden('#crates-panel'), true);

    await setCode(
      page,
      'use rand::prelude::*;\n\nfn main() {\n    let mut rng = StdRng::seed_from_u64(42);\n    println!("{}", rng.random_range(1..=6));\n}\n',
    );
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), '1\n');
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  test('works on a phone-sized screen', async () => {
    const page = await openPage(browser, server.url, { viewport: { width: 390, height: 844 } });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await runAndWait(page);
    assert.equal(await text(page, '#stdout'), 'Hello, world!\n');
    const run = await page.locator('#run').boundingBox();
    assert.ok(run.x >= 0 && run.x + run.width <= 390);
    await page.context().close();
  });
});

describe('when the server is gone', () => {
  test('the page says it cannot reach the server', async () => {
    const own = await startServer();
    try {
      const page = await openPage(browser, own.url);
      await own.stop();
      await runAndWait(page);
      assert.equal(await text(page, '#badge'), 'Server unreachable');
      assert.equal(await text(page, '#detail'), 'Could not reach the playground server.');
      assert.equal(
        await text(page, '#notice-text'),
        `The request to ${own.url}execute failed before any answer came back: the server may be stopped or restarting, or the network is down. Your code is kept in this browser; try again once the server is back.`,
      );
      assert.equal(await page.isVisible('#retry'), true);
      assert.equal(await text(page, '#retry'), 'Try again');
      await page.context().close();
    } finally {
      await own.stop();
    }
  });
});

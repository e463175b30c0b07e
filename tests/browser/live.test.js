// The page's live runs over the `live` WebSocket: output shown as the program writes it,
// interactive input, cancel that stops the program on the server, and the fall back to
// `POST execute` where WebSockets do not get through.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TIMEOUT, freePort, markedLines, openPage, runAndWait, setCode, text, withServerAndBrowser } from './harness.js';

let server;
let browser;
withServerAndBrowser((s, b) => ([server, browser] = [s, b]));

/** The JSON messages the page sends and receives on its WebSockets, in order. */
function recordFrames(page) {
  const frames = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => frames.push({ dir: 'sent', ...JSON.parse(f.payload) }));
    ws.on('framereceived', (f) => frames.push({ dir: 'received', ...JSON.parse(f.payload) }));
  });
  return frames;
}

/** The paths of the page's requests to `POST execute`. */
function recordExecutes(page) {
  const posts = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/execute') posts.push(r.url());
  });
  return posts;
}

/** Counts the lines of its input until the input ends. */
const LINE_COUNTER = [
  'use std::io::BufRead;',
  '',
  'fn main() {',
  '    let mut n = 0;',
  '    for line in std::io::stdin().lock().lines() {',
  '        n += 1;',
  '        println!("got: {}", line.unwrap());',
  '    }',
  '    println!("end of input after {n} lines");',
  '}',
  '',
].join('\n');

const stdoutHas = (page, part) =>
  page.waitForFunction((p) => document.getElementById('stdout').textContent.includes(p), part, { timeout: TIMEOUT });

describe('live runs', { timeout: 5 * TIMEOUT }, () => {
  test('a slow printer shows each line before the program ends', async () => {
    const page = await openPage(browser, server.url);
    const frames = recordFrames(page);
    const posts = recordExecutes(page);
    const code = [
      'use std::{thread, time::Duration};',
      '',
      'fn main() {',
      '    let unused = 1;',
      '    for i in 0..4 {',
      '        println!("tick {i}");',
      '        thread::sleep(Duration::from_millis(700));',
      '    }',
      '}',
      '',
    ].join('\n');
    await setCode(page, code);
    await page.click('#run');
    await stdoutHas(page, 'tick 0');
    // The program has at least 2 s to go: the page is still running it, and shows what came.
    assert.equal(await text(page, '#badge'), 'Running');
    assert.equal(await page.getAttribute('#badge', 'class'), 'badge running');
    assert.equal(await page.getAttribute('html', 'data-runs'), null);
    assert.ok(!(await text(page, '#stdout')).includes('tick 3'));
    assert.equal(await page.isVisible('#cancel'), true);
    // The compiler's warning, from the `compiled` message, is already listed and marked.
    assert.equal(await page.locator('#diagnostics .d-warning .d-message').textContent(), 'unused variable: `unused`');
    assert.deepEqual(await markedLines(page, 'warning'), ['4']);

    await page.waitForSelector('html[data-runs="1"]', { timeout: TIMEOUT });
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), 'tick 0\ntick 1\ntick 2\ntick 3\n');
    const meta = await page.locator('#meta span').allTextContents();
    assert.deepEqual(meta.map((m) => m.split(' ')[0]), ['Compile', 'Run', 'Fuel', 'Total']);
    assert.match(meta[1], /^Run [2-4]\.\d\d s$/); // four ticks 700 ms apart, from the `done` message
    assert.equal(await page.isHidden('#live-input'), true);

    // What went over the socket: the program, then the server's messages in protocol order.
    const kinds = frames.map((f) => `${f.dir} ${f.type}`);
    assert.deepEqual(kinds, [
      'sent run',
      'received compiling',
      'received compiled',
      'received stdout',
      'received stdout',
      'received stdout',
      'received stdout',
      'received done',
    ]);
    assert.deepEqual(
      { code: frames[0].code, edition: frames[0].edition, mode: frames[0].mode, stdin: frames[0].stdin },
      { code, edition: '2024', mode: 'debug', stdin: '' },
    );
    assert.deepEqual(posts, []);
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  test('the countdown example streams its lines', async () => {
    const page = await openPage(browser, server.url);
    await page.selectOption('#examples', 'countdown');
    await page.click('#run');
    await stdoutHas(page, '5...');
    assert.equal(await text(page, '#badge'), 'Running');
    await page.waitForSelector('html[data-runs="1"]', { timeout: TIMEOUT });
    assert.equal(await text(page, '#stdout'), '5...\n4...\n3...\n2...\n1...\nLiftoff!\n');
    await page.context().close();
  });

  test('the program reads a line typed while it runs', async () => {
    const page = await openPage(browser, server.url);
    const frames = recordFrames(page);
    await page.selectOption('#examples', 'interactive');
    await page.click('#run');
    await page.waitForSelector('#live-input:not([hidden])', { timeout: TIMEOUT });
    await stdoutHas(page, 'What is your name? ');
    assert.equal(await text(page, '#badge'), 'Running');
    await page.fill('#input-line', 'Ferris');
    await page.press('#input-line', 'Enter');
    await page.waitForSelector('html[data-runs="1"]', { timeout: TIMEOUT });
    assert.equal(await text(page, '#badge'), 'Success');
    // The typed line is echoed where the program read it, as a terminal shows it.
    assert.equal(await text(page, '#stdout'), 'What is your name? Ferris\nHello, Ferris!\n');
    assert.equal(await text(page, '#stdout .echo'), 'Ferris\n');
    assert.equal(await page.isHidden('#live-input'), true);
    assert.deepEqual(
      frames.filter((f) => f.dir === 'sent'),
      [frames[0], { dir: 'sent', type: 'stdin', data: 'Ferris\n' }],
    );
    await page.context().close();
  });

  test('typed lines, then Ctrl+D ends the input', async () => {
    const page = await openPage(browser, server.url);
    const frames = recordFrames(page);
    await setCode(page, LINE_COUNTER);
    await page.click('#run');
    await page.waitForSelector('#live-input:not([hidden])', { timeout: TIMEOUT });
    await page.fill('#input-line', 'first');
    await page.click('#input-send');
    await stdoutHas(page, 'got: first\n');
    await page.fill('#input-line', 'second');
    await page.press('#input-line', 'Enter');
    await stdoutHas(page, 'got: second\n');
    assert.equal(await text(page, '#badge'), 'Running');
    await page.keyboard.press('Control+D');
    await page.waitForSelector('html[data-runs="1"]', { timeout: TIMEOUT });
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), 'first\ngot: first\nsecond\ngot: second\nend of input after 2 lines\n');
    assert.deepEqual(
      frames.filter((f) => f.dir === 'sent').map(({ type, data, stdin }) => ({ type, data, stdin })),
      [
        { type: 'run', data: undefined, stdin: '' },
        { type: 'stdin', data: 'first\n', stdin: undefined },
        { type: 'stdin', data: 'second\n', stdin: undefined },
        { type: 'stdinClose', data: undefined, stdin: undefined },
      ],
    );
    // Closing the input line gave the focus back to the editor.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'code');
    await page.context().close();
  });

  test('text in the Stdin panel is the whole input', async () => {
    const page = await openPage(browser, server.url);
    const frames = recordFrames(page);
    let inputShown = false;
    await page.exposeFunction('inputShown', () => (inputShown = true));
    await page.evaluate(() => {
      const form = document.getElementById('live-input');
      new MutationObserver(() => !form.hidden && window.inputShown()).observe(form, { attributes: true });
    });
    await setCode(page, LINE_COUNTER);
    await page.click('#stdin-toggle');
    await page.fill('#stdin', 'a\nb\nc\n');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), 'got: a\ngot: b\ngot: c\nend of input after 3 lines\n');
    assert.deepEqual(
      frames.filter((f) => f.dir === 'sent').map(({ type, stdin }) => ({ type, stdin })),
      [{ type: 'run', stdin: 'a\nb\nc\n' }, { type: 'stdinClose', stdin: undefined }],
    );
    assert.equal(inputShown, false);
    await page.context().close();
  });

  test('a program that waits for input past the time limit is explained', async () => {
    const page = await openPage(browser, server.url);
    await page.selectOption('#examples', 'interactive');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Time limit');
    assert.equal(await text(page, '#stdout'), 'What is your name? ');
    assert.match(await text(page, '#explain'), /Its input was still open: .*press End input \(Ctrl\+D\)/);
    await page.context().close();
  });

  test('Cancel stops an endless loop on the server at once', async () => {
    const page = await openPage(browser, server.url);
    const frames = recordFrames(page);
    await page.selectOption('#examples', 'timeout');
    await page.click('#run');
    await stdoutHas(page, 'starting an endless loop...');
    assert.equal(await text(page, '#badge'), 'Running');
    assert.match(await text(page, '#run-label'), /^Running \d+\.\d s$/);
    const clicked = Date.now();
    await page.click('#cancel');
    await page.waitForSelector('html[data-runs="1"]', { timeout: TIMEOUT });
    const took = Date.now() - clicked;
    // The time limit is 5 s; the kill ends it well before.
    assert.ok(took < 2500, `stopping took ${took} ms`);
    assert.equal(await text(page, '#badge'), 'Stopped');
    assert.match(await text(page, '#detail'), /^Stopped after (\d+ ms|\d+\.\d\d s)\.$/);
    assert.equal(
      await text(page, '#notice-text'),
      'You stopped the program, and the server ended it. What it printed until then is below.',
    );
    assert.equal(await text(page, '#stdout'), 'starting an endless loop...\n');
    assert.equal(await page.isHidden('#cancel'), true);
    assert.equal(await page.isHidden('#live-input'), true);
    assert.equal(await text(page, '#run-label'), 'Run');
    // The server confirmed the kill.
    assert.deepEqual(
      frames.slice(-2).map((f) => `${f.dir} ${f.type}`),
      ['sent kill', 'received killed'],
    );
    // The page can run again right away.
    await setCode(page, 'fn main() {\n    println!("again");\n}\n');
    await runAndWait(page);
    assert.equal(await text(page, '#stdout'), 'again\n');
    await page.context().close();
  });

  test('an error after compiling, and a connection that breaks, are explained', async () => {
    const page = await openPage(browser, server.url);
    let script = 'busy';
    await page.routeWebSocket('**/live', (ws) => {
      ws.onMessage(() => {
        ws.send(JSON.stringify({ type: 'compiling' }));
        ws.send(JSON.stringify({ type: 'compiled', success: true, compilerOutput: '', diagnostics: [] }));
        ws.send(JSON.stringify({ type: 'stdout', data: 'partial\n' }));
        if (script === 'busy') {
          ws.send(JSON.stringify({ type: 'error', error: 'the server is busy (every run slot is taken); retry in 2 s' }));
        } else {
          ws.close();
        }
      });
    });
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Server busy');
    assert.equal(await text(page, '#detail'), 'The server is busy; it asks to try again in 2 s.');
    assert.equal(await text(page, '#stdout'), 'partial\n');
    assert.equal(await text(page, '#retry'), 'Try again (2 s)');

    script = 'close';
    await page.waitForSelector('#retry:not([disabled])', { timeout: 5000 });
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Connection lost');
    assert.equal(await text(page, '#detail'), 'The connection to the server closed before the run finished.');
    assert.equal(await text(page, '#stdout'), 'partial\n');
    assert.equal(await page.isVisible('#retry'), true);
    await page.context().close();
  });

  test('Cancel while compiling stops the compile', async () => {
    const page = await openPage(browser, server.url);
    const sent = [];
    await page.routeWebSocket('**/live', (ws) => {
      ws.onMessage((m) => {
        const message = JSON.parse(m);
        sent.push(message.type);
        if (message.type === 'run') ws.send(JSON.stringify({ type: 'compiling' }));
        if (message.type === 'run' && sent.length === 1) {
          ws.send(JSON.stringify({ type: 'compiled', success: true, compilerOutput: '', diagnostics: [] }));
          ws.send(JSON.stringify({ type: 'stdout', data: 'earlier\n' }));
          ws.send(JSON.stringify({
            type: 'done', success: true, status: 'ok', exitCode: 0, exitDetail: 'Exited with status 0',
            stdout: 'earlier\n', stderr: '', compilerOutput: '', diagnostics: [], truncated: false,
            fuelConsumed: 1, timings: { queueMs: 0, compileMs: 1, runMs: 1 },
          }));
          ws.close();
        }
        if (message.type === 'kill') {
          ws.send(JSON.stringify({ type: 'killed' }));
          ws.close();
        }
      });
    });
    // Output of an earlier run is on the page; it must not pass for this run's.
    await runAndWait(page);
    assert.equal(await text(page, '#stdout'), 'earlier\n');
    await page.click('#run');
    await page.waitForFunction(() => document.getElementById('badge').textContent === 'Compiling');
    assert.equal(await text(page, '#detail'), 'Compiling…');
    await page.click('#cancel');
    await page.waitForSelector('html[data-runs="2"]');
    assert.equal(await text(page, '#badge'), 'Stopped');
    assert.equal(await text(page, '#notice-text'), 'You stopped the run before the program started; nothing ran.');
    assert.equal(await page.isHidden('#out-stdout'), true);
    assert.deepEqual(sent, ['run', 'run', 'kill']);
    await page.context().close();
  });
});

describe('without WebSockets the page uses POST execute', { timeout: 5 * TIMEOUT }, () => {
  const program = 'fn main() {\n    println!("over HTTP");\n}\n';

  async function runsOverHttp(page) {
    const posts = recordExecutes(page);
    await setCode(page, program);
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), 'over HTTP\n');
    assert.deepEqual(posts, [server.url + 'execute']);
    assert.deepEqual(page.pageErrors, []);
  }

  test('when the WebSocket constructor fails', async () => {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      window.WebSocket = class {
        constructor() {
          throw new DOMException('blocked by policy', 'SecurityError');
        }
      };
    });
    const page = await context.newPage();
    page.pageErrors = [];
    page.on('pageerror', (e) => page.pageErrors.push(e.message));
    await page.goto(server.url);
    await page.waitForSelector('html[data-ready="true"]');
    await runsOverHttp(page);
    await context.close();
  });

  test('when the WebSocket cannot connect', async () => {
    const closed = await freePort(); // nothing listens there: the connection is refused
    const context = await browser.newContext();
    await context.addInitScript((port) => {
      const Real = window.WebSocket;
      window.WebSocket = class extends Real {
        constructor(url, protocols) {
          super(`ws://127.0.0.1:${port}/live`, protocols);
        }
      };
    }, closed);
    const page = await context.newPage();
    page.pageErrors = [];
    page.on('pageerror', (e) => page.pageErrors.push(e.message));
    await page.goto(server.url);
    await page.waitForSelector('html[data-ready="true"]');
    await runsOverHttp(page);
    await context.close();
  });

  test('when the connection closes before the server starts', async () => {
    const page = await openPage(browser, server.url);
    // A proxy that accepts the upgrade but passes nothing on.
    await page.routeWebSocket('**/live', (ws) => ws.close());
    await runsOverHttp(page);
    await page.context().close();
  });

  test('Cancel stops waiting for the HTTP answer', async () => {
    const page = await openPage(browser, server.url);
    await page.routeWebSocket('**/live', (ws) => ws.close());
    await page.selectOption('#examples', 'timeout');
    await page.click('#run');
    await page.waitForSelector('#badge.running');
    assert.match(await text(page, '#run-label'), /^Running \d+\.\d s$/);
    assert.equal(await page.isVisible('#cancel'), true);
    await page.click('#cancel');
    await page.waitForSelector('html[data-runs="1"]');
    assert.equal(await text(page, '#badge'), 'Cancelled');
    assert.match(await text(page, '#detail'), /^Stopped waiting after \d+ ms\.$|^Stopped waiting after \d+\.\d\d s\.$/);
    assert.equal(await page.isHidden('#cancel'), true);
    assert.equal(await text(page, '#run-label'), 'Run');
    await page.context().close();
  });
});

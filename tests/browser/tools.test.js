// The page's tools besides Run: the Run / Build / Test choice, Rustfmt, Clippy, the compile
// targets, channel and backtrace, each answered in its own output tab; and the editor's search,
// folding and multiple cursors.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  TIMEOUT, getCode, markedLines, openPage, runAndWait, setCode, text, withServerAndBrowser,
} from './harness.js';

/** Waits until `selector` matches exactly `n` elements (CodeMirror redraws after a frame). */
async function expectCount(page, selector, n) {
  await page
    .waitForFunction(([sel, count]) => document.querySelectorAll(sel).length === count, [selector, n], { timeout: 5000 })
    .catch(() => {});
  assert.equal(await page.locator(selector).count(), n);
}

let server;
let browser;
withServerAndBrowser((s, b) => ([server, browser] = [s, b]));

/** Picks `tool` in the Tools menu and waits until its tab shows the answer. */
async function useTool(page, tool) {
  const done = Number(await page.getAttribute('html', 'data-tools')) || 0;
  await page.selectOption('#tools', tool);
  await page.waitForSelector(`html[data-tools="${done + 1}"]`, { timeout: TIMEOUT });
  assert.equal(await page.inputValue('#tools'), '');
  assert.equal(await page.getAttribute(`#tab-${tool}`, 'aria-selected'), 'true');
  assert.equal(await page.isVisible(`#panel-${tool}`), true);
  assert.equal(await page.isHidden('#panel-run'), true);
}

/** The JSON bodies the page POSTs to `path`. */
function recordPosts(page, path) {
  const bodies = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === path) bodies.push(JSON.parse(r.postData()));
  });
  return bodies;
}

const panelText = (page, tool, selector) => text(page, `#panel-${tool} ${selector}`);

describe('the tools on the page', { timeout: 8 * TIMEOUT }, () => {
  test('Auto picks Run, Build or Test from the code, and the choice can be made by hand', async () => {
    const page = await openPage(browser, server.url);
    assert.equal(await text(page, '#run-label'), 'Run');
    assert.equal(await text(page, '#action option[value="auto"]'), 'Auto: Run');

    // Tests without a main are tested, as `cargo test` would.
    await setCode(page, '#[test]\nfn adds() {\n    assert_eq!(1 + 1, 2);\n}\n');
    assert.equal(await text(page, '#run-label'), 'Test');
    assert.equal(await text(page, '#action option[value="auto"]'), 'Auto: Test');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.match(await text(page, '#stdout'), /^\nrunning 1 test\ntest adds \.\.\. ok\n\ntest result: ok\. 1 passed; 0 failed;/);

    // Code without a main is built, not run.
    await setCode(page, 'pub fn double(x: u32) -> u32 {\n    x * 2\n}\n');
    assert.equal(await text(page, '#run-label'), 'Build');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await page.isHidden('#out-compiler'), true);
    // Built as a library, the code is the server's src/lib.rs: its errors are marked in the editor.
    await setCode(page, 'pub fn double(x: u32) -> u32 {\n    x * 2.0\n}\n');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Compile error');
    assert.deepEqual(await page.locator('#diagnostics .d-loc').allTextContents(), ['line 2:7']);
    assert.deepEqual(await markedLines(page, 'error'), ['2']);

    // Chosen by hand: Build compiles a program with a main without running it.
    await setCode(page, 'fn main() {\n    println!("not printed");\n}\n');
    assert.equal(await text(page, '#run-label'), 'Run');
    await page.selectOption('#action', 'build');
    assert.equal(await text(page, '#run-label'), 'Build');
    const posts = recordPosts(page, '/execute');
    await page.routeWebSocket('**/live', (ws) => ws.close()); // over HTTP, to see the request
    await runAndWait(page);
    assert.equal(posts.at(-1).crateType, 'lib');
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), '');
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]');
    assert.equal(await page.inputValue('#action'), 'build');
    await page.context().close();
  });

  test('Rustfmt formats the code as one undo step', async () => {
    const page = await openPage(browser, server.url);
    const messy = 'fn main(){let x=1;\nprintln!("{}",x+1);}\n';
    await setCode(page, messy);
    await useTool(page, 'format');
    assert.equal(await getCode(page), 'fn main() {\n    let x = 1;\n    println!("{}", x + 1);\n}\n');
    assert.equal(await panelText(page, 'format', '.badge'), 'Done');
    assert.equal(
      await panelText(page, 'format', '.explain'),
      'The code in the editor is formatted. Ctrl+Z in the editor brings back the code as it was.',
    );
    await page.focus('#code');
    await page.keyboard.press('Control+Z');
    assert.equal(await getCode(page), messy);

    // Code that does not parse stays as it is, and rustfmt's message says why.
    await setCode(page, 'fn main() {\n    let = ;\n}\n');
    await useTool(page, 'format');
    assert.equal(await getCode(page), 'fn main() {\n    let = ;\n}\n');
    assert.equal(await panelText(page, 'format', '.badge'), 'Failed');
    assert.match(await panelText(page, 'format', '.explain'), /^rustfmt could not format the program/);
    assert.match(await panelText(page, 'format', '.tool-stderr'), /error: expected pattern, found `=`/);
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  });

  test('Clippy\'s lints are listed and marked in the editor', async () => {
    const page = await openPage(browser, server.url);
    const code = 'fn main() {\n    let v = vec![1, 2];\n    if v.len() == 0 {\n        println!("empty");\n    }\n}\n';
    await setCode(page, code);
    await useTool(page, 'clippy');
    assert.equal(await panelText(page, 'clippy', '.badge'), 'Done');
    assert.equal(
      await panelText(page, 'clippy', '.explain'),
      'Clippy\'s findings: 2 warnings. Each is marked in the editor: click one to jump to it.',
    );
    const items = page.locator('#panel-clippy .diagnostics button');
    assert.deepEqual(await items.locator('.d-message').allTextContents(), ['length comparison to zero', 'useless use of `vec!`']);
    assert.deepEqual(await items.locator('.d-loc').allTextContents(), ['line 3:8', 'line 2:13']);
    assert.match(await panelText(page, 'clippy', '.tool-stderr'), /^warning: length comparison to zero\n --> src\/main\.rs:3:8\n/);
    assert.deepEqual(await markedLines(page, 'warning'), ['2', '3']);
    assert.deepEqual(await page.locator('.cm-lintRange-warning').allTextContents(), ['vec![1, 2]', 'v.len() == 0']);
    const item = items.first();
    await item.click();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'code');
    assert.equal(await text(page, '.cm-lineNumbers .cm-activeLineGutter'), '3');
    await page.context().close();
  });

  test('Show MIR, LLVM IR, WASM and assembly, each in its own tab', async () => {
    const page = await openPage(browser, server.url);
    const posts = recordPosts(page, '/compile');
    await setCode(page, 'fn main() {\n    println!("{}", add(2, 3));\n}\n\nfn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n');

    await useTool(page, 'mir');
    assert.equal(await panelText(page, 'mir', '.badge'), 'Done');
    assert.equal(await panelText(page, 'mir', '.out-code h2'), 'MIR');
    assert.match(await panelText(page, 'mir', '.tool-code'), /^\/\/ WARNING: This output format is intended for human consumers only/);
    assert.match(await panelText(page, 'mir', '.tool-code'), /\nfn add\(_1: u32, _2: u32\) -> u32 \{\n/);

    await useTool(page, 'llvm-ir');
    assert.match(await panelText(page, 'llvm-ir', '.tool-code'), /\ndefine internal (noundef )?i32 @_ZN10playground3add/);

    await useTool(page, 'wasm');
    assert.match(await panelText(page, 'wasm', '.tool-code'), /^\(module/);

    await page.click('#options-toggle');
    await page.selectOption('#asm-flavor', 'intel');
    await useTool(page, 'asm');
    assert.match(await panelText(page, 'asm', '.tool-code'), /playground::add/);
    assert.deepEqual(
      posts.map(({ target, assemblyFlavor, demangleAssembly, processAssembly }) => ({ target, assemblyFlavor, demangleAssembly, processAssembly })),
      [
        { target: 'mir', assemblyFlavor: undefined, demangleAssembly: undefined, processAssembly: undefined },
        { target: 'llvm-ir', assemblyFlavor: undefined, demangleAssembly: undefined, processAssembly: undefined },
        { target: 'wasm', assemblyFlavor: undefined, demangleAssembly: undefined, processAssembly: undefined },
        { target: 'asm', assemblyFlavor: 'intel', demangleAssembly: 'demangle', processAssembly: 'filter' },
      ],
    );
    // Every tab stays, with its last answer; the output tab is one click away.
    assert.deepEqual(await page.locator('#tabs [role=tab]').allTextContents(), ['Output', 'MIR', 'LLVM IR', 'WASM', 'Assembly']);
    await page.click('#tab-run');
    assert.equal(await page.isVisible('#panel-run'), true);
    assert.equal(await page.isHidden('#panel-asm'), true);
    // Arrow keys move between tabs.
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-mir');
    assert.equal(await page.isVisible('#panel-mir'), true);
    await page.context().close();
  });

  test('a program that does not compile is explained in the tool\'s tab', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, 'fn main() {\n    let x: i32 = "five";\n}\n');
    await useTool(page, 'mir');
    assert.equal(await panelText(page, 'mir', '.badge'), 'Failed');
    assert.equal(
      await panelText(page, 'mir', '.explain'),
      'The program did not compile, so there is no MIR to show; the errors are below and marked in the editor.',
    );
    assert.equal(await page.locator('#panel-mir .diagnostics .d-message').first().textContent(), 'mismatched types');
    assert.deepEqual(await markedLines(page, 'error'), ['2']);
    await page.context().close();
  });

  test('a tool the server does not have, or an error answer, shows the server\'s message', async () => {
    const page = await openPage(browser, server.url);
    await page.route('**/miri', (route) =>
      route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: 'no such endpoint' }) }),
    );
    await useTool(page, 'miri');
    assert.equal(await panelText(page, 'miri', '.badge'), 'Not found');
    assert.equal(await panelText(page, 'miri', '.detail'), 'This server does not offer Miri.');
    assert.equal(await panelText(page, 'miri', '.notice-text'), 'HTTP 404: no such endpoint');

    // A real 400 from the server: a channel it does not have.
    await page.evaluate(() => document.getElementById('channel').append(new Option('Imaginary', 'imaginary')));
    await page.selectOption('#channel', 'imaginary');
    await useTool(page, 'clippy');
    assert.equal(await panelText(page, 'clippy', '.badge'), 'Request rejected');
    assert.match(await panelText(page, 'clippy', '.notice-text'), /^HTTP 400: .*imaginary/);
    await page.context().close();
  });

  test('the Channel menu lists the server\'s channels, and a run uses the one chosen', async () => {
    // ./scripts/test-browser sets up all three (scripts/channels).
    const versions = await (await fetch(server.url + 'meta/versions')).json();
    const page = await openPage(browser, server.url);
    assert.deepEqual(await page.locator('#channel option').allTextContents(), ['Stable', 'Beta', 'Nightly']);
    assert.equal(await page.getAttribute('#channel option[value="nightly"]', 'title'), `rustc ${versions.nightly.rustc.version}`);
    const posts = recordPosts(page, '/execute');
    await page.routeWebSocket('**/live', (ws) => ws.close()); // over HTTP, to see the requests
    // A feature gate: refused by stable's rustc, accepted by nightly's.
    await setCode(page, '#![feature(never_type)]\n\nfn main() {\n    println!("on nightly");\n}\n');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Compile error');
    assert.deepEqual(await page.locator('#diagnostics .d-message').allTextContents(), ['`#![feature]` may not be used on the stable release channel']);
    assert.deepEqual(await markedLines(page, 'error'), ['1']);
    await page.selectOption('#channel', 'nightly');
    await runAndWait(page);
    assert.equal(await text(page, '#badge'), 'Success');
    assert.equal(await text(page, '#stdout'), 'on nightly\n');
    assert.deepEqual(posts.map((p) => p.channel), ['stable', 'nightly']);
    await page.context().close();
  });

  test('Backtrace: a panic prints the frames, as native Rust does with RUST_BACKTRACE=1', async () => {
    const page = await openPage(browser, server.url);
    const posts = recordPosts(page, '/execute');
    await page.routeWebSocket('**/live', (ws) => ws.close());
    await setCode(page, 'fn inner(v: &[i32]) -> i32 {\n    v[3]\n}\n\nfn main() {\n    println!("start");\n    let v = vec![1, 2, 3];\n    println!("{}", inner(&v));\n}\n');
    await page.click('#options-toggle');
    await page.check('#backtrace');
    await runAndWait(page);
    assert.equal(posts[0].backtrace, true);
    assert.equal(await text(page, '#badge'), 'Panicked');
    assert.equal(await text(page, '#stdout'), 'start\n');
    // A native build's frames (the thread id aside), with stable 1.95's std.
    const std = '/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library';
    assert.equal(
      await text(page, '#stderr'),
      `\nthread 'main' (1) panicked at src/main.rs:2:5:\nindex out of bounds: the len is 3 but the index is 3\nstack backtrace:\n   0: __rustc::rust_begin_unwind\n             at ${std}/std/src/panicking.rs:689:5\n   1: core::panicking::panic_fmt\n             at ${std}/core/src/panicking.rs:80:14\n   2: core::panicking::panic_bounds_check\n             at ${std}/core/src/panicking.rs:271:5\n   3: playground::inner\n             at ./src/main.rs:2:5\n   4: playground::main\n             at ./src/main.rs:8:20\n   5: core::ops::function::FnOnce::call_once\n             at ${std}/core/src/ops/function.rs:250:5\nnote: Some details are omitted, run with \`RUST_BACKTRACE=full\` for a verbose backtrace.\n`,
    );
    await page.context().close();
  });
});

// Nightly's tools (Miri, macro expansion, HIR), whatever the Channel menu says: the server has
// beta and nightly when ./scripts/test-browser has set them up (scripts/channels). The expected
// texts are the tools' own output for the same programs.
describe('Miri, Expand macros and HIR', { timeout: 4 * TIMEOUT }, () => {
  test('Miri reports a dangling pointer as undefined behaviour, marked in the editor', async () => {
    const page = await openPage(browser, server.url);
    const posts = recordPosts(page, '/miri');
    const code = 'fn main() {\n    let dangling = {\n        let x = 42;\n        &x as *const i32\n    };\n    println!("before");\n    let value = unsafe { *dangling };\n    println!("{value}");\n}\n';
    await setCode(page, code);
    await useTool(page, 'miri');
    assert.equal(await panelText(page, 'miri', '.badge'), 'Failed');
    assert.equal(await panelText(page, 'miri', '.detail'), 'Exited with status 1');
    assert.equal(await panelText(page, 'miri', '.explain'), 'Miri found a problem, or the program did not compile or ended with an error: the details are below.');
    // What the program printed before the bad read.
    assert.equal(await panelText(page, 'miri', '.tool-stdout'), 'before\n');
    // Miri's report, as nightly's `miri` prints it (the allocation's number is Miri's own).
    const report = await panelText(page, 'miri', '.tool-stderr');
    const alloc = /alloc\d+/.exec(report)?.[0];
    assert.equal(
      report,
      `error: Undefined Behavior: memory access failed: ${alloc} has been freed, so this pointer is dangling\n --> src/main.rs:7:26\n  |\n7 |     let value = unsafe { *dangling };\n  |                          ^^^^^^^^^ Undefined Behavior occurred here\n  |\n  = help: this indicates a bug in the program: it performed an invalid operation, and caused Undefined Behavior\n  = help: see https://doc.rust-lang.org/nightly/reference/behavior-considered-undefined.html for further information\nhelp: ${alloc} was allocated here:\n --> src/main.rs:3:13\n  |\n3 |         let x = 42;\n  |             ^\nhelp: ${alloc} was deallocated here:\n --> src/main.rs:5:5\n  |\n5 |     };\n  |     ^\n\nnote: some details are omitted, run with \`MIRIFLAGS=-Zmiri-backtrace=full\` for a verbose backtrace\n\nerror: aborting due to 1 previous error\n\n`,
    );
    const items = page.locator('#panel-miri .diagnostics li');
    assert.deepEqual(await items.locator('.d-message').allTextContents(), [
      `Undefined Behavior: memory access failed: ${alloc} has been freed, so this pointer is dangling`,
      'some details are omitted, run with `MIRIFLAGS=-Zmiri-backtrace=full` for a verbose backtrace',
    ]);
    assert.deepEqual(await items.locator('.d-loc').allTextContents(), ['line 7:26']);
    assert.deepEqual(await markedLines(page, 'error'), ['7']);
    assert.deepEqual(await page.locator('.cm-lintRange-error').allTextContents(), ['*dangling']);
    assert.equal(posts[0].aliasingModel, 'stacked');
    await page.context().close();
  });

  test('Miri\'s aliasing model is an option: Tree Borrows accepts what Stacked Borrows rejects', async () => {
    const page = await openPage(browser, server.url);
    const posts = recordPosts(page, '/miri');
    await setCode(page, 'fn main() {\n    let mut a = [1u8, 2];\n    let p = &mut a[0] as *mut u8;\n    unsafe { *p.add(1) = 3; }\n    println!("{:?}", a);\n}\n');
    await useTool(page, 'miri');
    assert.equal(await panelText(page, 'miri', '.badge'), 'Failed');
    assert.match(
      await panelText(page, 'miri', '.tool-stderr'),
      /^error: Undefined Behavior: attempting a write access using <\d+> at alloc\d+\[0x1\], but that tag does not exist in the borrow stack for this location\n --> src\/main\.rs:4:14\n/,
    );
    assert.deepEqual(await markedLines(page, 'error'), ['4']);

    await page.click('#options-toggle');
    await page.selectOption('#aliasing', 'tree');
    await useTool(page, 'miri');
    assert.equal(await panelText(page, 'miri', '.badge'), 'Done');
    assert.equal(await panelText(page, 'miri', '.detail'), 'Exited with status 0');
    assert.equal(await panelText(page, 'miri', '.tool-stdout'), '[1, 3]\n');
    assert.equal(await page.isHidden('#panel-miri .out-messages'), true);
    assert.deepEqual(posts.map((p) => p.aliasingModel), ['stacked', 'tree']);
    await page.context().close();
  });

  test('Expand macros shows #[derive(Debug)] as its impl, and a macro that does not exist', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, '#[derive(Debug)]\nstruct Point {\n    x: i32,\n    y: i32,\n}\n\nfn main() {\n    println!("{:?}", Point { x: 1, y: 2 });\n}\n');
    await useTool(page, 'expand');
    assert.equal(await panelText(page, 'expand', '.badge'), 'Done');
    assert.equal(await panelText(page, 'expand', '.detail'), 'Expanded');
    assert.equal(await panelText(page, 'expand', '.out-code h2'), 'Expanded code');
    // Nightly's `rustc -Zunpretty=expanded` (the body of `fmt` is left out: its helper changes
    // between nightlies).
    const expanded = await panelText(page, 'expand', '.tool-code');
    assert.ok(
      expanded.startsWith('#![feature(prelude_import)]\nextern crate std;\n#[prelude_import]\nuse std::prelude::rust_2024::*;\nstruct Point {\n    x: i32,\n    y: i32,\n}\n#[automatically_derived]\nimpl ::core::fmt::Debug for Point {\n    #[inline]\n    fn fmt(&self, f: &mut ::core::fmt::Formatter) -> ::core::fmt::Result {\n'),
      expanded,
    );
    assert.ok(
      expanded.endsWith('\n    }\n}\n\nfn main() {\n    { ::std::io::_print(format_args!("{0:?}\\n", Point { x: 1, y: 2 })); };\n}\n'),
      expanded,
    );

    await setCode(page, 'fn main() {\n    undefined!();\n}\n');
    await useTool(page, 'expand');
    assert.equal(await panelText(page, 'expand', '.badge'), 'Failed');
    assert.equal(await panelText(page, 'expand', '.detail'), 'Expansion failed');
    assert.equal(await panelText(page, 'expand', '.explain'), 'The macros could not be expanded; the compiler\'s messages are below.');
    assert.equal(await page.isHidden('#panel-expand .out-code'), true);
    assert.equal(
      await panelText(page, 'expand', '.tool-stderr'),
      'error: cannot find macro `undefined` in this scope\n --> src/main.rs:2:5\n  |\n2 |     undefined!();\n  |     ^^^^^^^^^\n\nerror: aborting due to 1 previous error\n\n',
    );
    assert.deepEqual(await markedLines(page, 'error'), ['2']);
    assert.deepEqual(await page.locator('.cm-lintRange-error').allTextContents(), ['undefined']);
    await page.context().close();
  });

  test('Show HIR: the program after desugaring, from nightly', async () => {
    const page = await openPage(browser, server.url);
    const posts = recordPosts(page, '/compile');
    await setCode(page, 'fn demo() -> impl std::fmt::Display {\n    42\n}\n\nfn total(v: &[u32]) -> u32 {\n    let mut sum = 0;\n    for x in v {\n        sum += x;\n    }\n    sum\n}\n\nfn main() {\n    let _ = (demo(), total(&[1, 2]));\n}\n');
    await useTool(page, 'hir');
    assert.equal(await panelText(page, 'hir', '.badge'), 'Done');
    assert.equal(await panelText(page, 'hir', '.out-code h2'), 'HIR');
    // `impl Trait` is a comment, `for` a loop over `next`, and `main` is one line.
    const lines = (await panelText(page, 'hir', '.tool-code')).split('\n');
    for (const line of [
      'fn demo() -> /*impl Trait*/ { 42 }',
      '            match into_iter(v) {',
      '                        match next(&mut iter) {',
      '                            None {} => break,',
      '                            Some {  0: x } => { sum += x; }',
      'fn main() { let _ = (demo(), total(&[1, 2])); }',
    ]) {
      assert.ok(lines.includes(line), `no line ${JSON.stringify(line)} in:\n${lines.join('\n')}`);
    }
    assert.deepEqual(posts.map(({ target, channel }) => ({ target, channel })), [{ target: 'hir', channel: 'stable' }]);
    await page.context().close();
  });
});

describe('the editor', { timeout: 3 * TIMEOUT }, () => {
  test('search and replace', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, 'fn main() {\n    let apple = 1;\n    println!("{apple} {}", apple + 1);\n}\n');
    await page.focus('#code');
    await page.keyboard.press('Control+F');
    await page.waitForSelector('.cm-search');
    await page.fill('.cm-search input[name=search]', 'apple');
    await page.fill('.cm-search input[name=replace]', 'pear');
    await page.click('.cm-search button[name=replaceAll]');
    assert.equal(await getCode(page), 'fn main() {\n    let pear = 1;\n    println!("{pear} {}", pear + 1);\n}\n');
    await page.keyboard.press('Escape');
    assert.equal(await page.isHidden('.cm-search'), true);
    // Undo brings every match back at once.
    await page.focus('#code');
    await page.keyboard.press('Control+Z');
    assert.equal(await getCode(page), 'fn main() {\n    let apple = 1;\n    println!("{apple} {}", apple + 1);\n}\n');
    await page.context().close();
  });

  test('folding a block, and unfolding it', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, 'fn main() {\n    let a = 1;\n    let b = 2;\n    println!("{}", a + b);\n}\n');
    await expectCount(page, '.cm-content .cm-line', 6);
    await page.locator('.cm-foldGutter .cm-gutterElement span[title="Fold line"]').first().click();
    // The block's lines are hidden behind one placeholder (`fn main() {…}`, then the last, empty
    // line); the text itself is unchanged.
    await expectCount(page, '.cm-content .cm-line', 2);
    assert.equal(await page.locator('.cm-content .cm-line').first().textContent(), 'fn main() {…}');
    await expectCount(page, '.cm-foldPlaceholder', 1);
    assert.equal(await getCode(page), 'fn main() {\n    let a = 1;\n    let b = 2;\n    println!("{}", a + b);\n}\n');
    // The placeholder's own click handler (a pointer click at its centre sometimes lands before
    // CodeMirror has attached it to the redrawn line).
    await page.locator('.cm-foldPlaceholder').dispatchEvent('click');
    await expectCount(page, '.cm-content .cm-line', 6);
    // And from the keyboard: Ctrl+Shift+[ folds the block at the caret, Ctrl+Shift+] unfolds it.
    await page.focus('#code');
    await page.keyboard.press('Control+Home');
    await page.keyboard.press('Control+Shift+BracketLeft');
    await expectCount(page, '.cm-foldPlaceholder', 1);
    await page.keyboard.press('Control+Shift+BracketRight');
    await expectCount(page, '.cm-foldPlaceholder', 0);
    await page.context().close();
  });

  test('multiple cursors: Ctrl+D adds the next match, typing changes them all', async () => {
    const page = await openPage(browser, server.url);
    await setCode(page, 'fn main() {\n    let n = 1;\n    println!("{}", n + n);\n}\n');
    await page.focus('#code');
    // Select the `n` of `let n`, then the next two.
    await page.evaluate(async () => {
      const { EditorView } = await import('./static/codemirror.js');
      const view = EditorView.findFromDOM(document.querySelector('.cm-editor'));
      const at = view.state.doc.toString().indexOf('let n') + 4;
      view.dispatch({ selection: { anchor: at, head: at + 1 } });
    });
    await page.keyboard.press('Control+D');
    await page.keyboard.press('Control+D');
    await page.keyboard.type('count');
    assert.equal(await getCode(page), 'fn main() {\n    let count = 1;\n    println!("{}", count + count);\n}\n');
    await page.context().close();
  });
});

// The playground page: runs the editor's program over the `live` WebSocket (output shown as the
// program writes it, interactive input, cancel), or through `POST execute` where WebSockets do not
// get through, and shows the result; the other tools (tools.js) answer in tabs of their own.
// Plain ES modules, no build step (the CodeMirror bundle, codemirror.js, is built once and
// committed); served from the binary (see src/api/page.rs).

import { Editor } from './editor.js';
import { FileList, MAIN } from './files.js';
import { TOOLS, Tabs, callTool, countText, describeHttpError, diagnosticItems, placeIn, showInPanel } from './tools.js';

const STORAGE_KEY = 'wasm-playground:v1';
// The program a shared link replaced, so opening a link never loses one's own work.
const REPLACED_KEY = 'wasm-playground:v1:replaced';
const EDITIONS = ['2015', '2018', '2021', '2024'];
const MODES = ['debug', 'release'];

const DEFAULT_CODE = `fn main() {
    println!("Hello, world!");
}
`;

/**
 * The examples menu. `stdin`, when present, is put in the stdin panel, which opens; `mode`, when
 * present, is selected.
 */
const EXAMPLES = [
  { group: 'Basics', id: 'hello', title: 'Hello, world', code: DEFAULT_CODE },
  {
    group: 'Basics',
    id: 'iterators',
    title: 'Iterators and closures',
    code: `// Iterators are lazy: nothing happens until a consumer such as \`sum\` or
// \`collect\` asks for the items.
fn main() {
    let words = ["ferris", "borrow", "lifetime", "trait", "closure", "iterator"];

    // Filter, transform and collect in one pipeline.
    let long: Vec<String> = words
        .iter()
        .filter(|w| w.len() > 6)
        .map(|w| w.to_uppercase())
        .collect();
    println!("long words: {long:?}");

    // The sum of the squares of the even numbers below 20.
    let total: u32 = (1..20).filter(|n| n % 2 == 0).map(|n| n * n).sum();
    println!("sum of even squares: {total}");

    // Number the items, and find the longest.
    for (i, word) in words.iter().enumerate() {
        println!("{i}: {word:<10}{:>2} letters", word.len());
    }
    let longest = words.iter().max_by_key(|w| w.len()).unwrap();
    println!("longest: {longest}");
}
`,
  },
  {
    group: 'Basics',
    id: 'stdin',
    title: 'Reading stdin',
    stdin: '3 4 5\n10 twenty 30\n',
    code: `use std::io::{self, BufRead};

// Reads numbers from standard input (the Stdin panel) and sums them.
fn main() {
    let mut numbers = Vec::new();
    for line in io::stdin().lock().lines() {
        let line = line.expect("stdin is readable");
        for word in line.split_whitespace() {
            match word.parse::<f64>() {
                Ok(n) => numbers.push(n),
                Err(_) => eprintln!("skipping {word:?}: not a number"),
            }
        }
    }
    let sum: f64 = numbers.iter().sum();
    println!("read {} numbers", numbers.len());
    println!("sum  = {sum}");
    println!("mean = {:.2}", sum / numbers.len() as f64);
}
`,
  },
  {
    group: 'Live output and input',
    id: 'countdown',
    title: 'Slow output (a countdown)',
    code: `use std::thread::sleep;
use std::time::Duration;

// Output shows up as the program writes it: one line after another,
// not all at the end.
fn main() {
    for n in (1..=5).rev() {
        println!("{n}...");
        sleep(Duration::from_millis(600));
    }
    println!("Liftoff!");
}
`,
  },
  {
    group: 'Live output and input',
    id: 'interactive',
    title: 'Interactive input (a greeting)',
    code: `use std::io::{self, BufRead, Write};

// Run it, then type your name in the Input line under the output and
// press Enter. (The run's time limit includes the wait for input.)
fn main() {
    print!("What is your name? ");
    io::stdout().flush().unwrap();

    let mut name = String::new();
    io::stdin().lock().read_line(&mut name).unwrap();
    let name = name.trim();
    if name.is_empty() {
        println!("No name given.");
    } else {
        println!("Hello, {name}!");
    }
}
`,
  },
  {
    group: 'When things go wrong',
    id: 'compile-error',
    title: 'A borrow error (compile error)',
    code: `fn main() {
    let mut names = vec![String::from("Ferris")];
    let first = &names[0];
    // \`first\` still borrows \`names\`, so it cannot be changed here.
    names.push(String::from("Corro"));
    println!("first: {first}");
}
`,
  },
  {
    group: 'When things go wrong',
    id: 'panic',
    title: 'A panic',
    code: `fn main() {
    let numbers = vec![1, 2, 3];
    let index = numbers.len() + 2;
    println!("reading numbers[{index}]...");
    // Indexing past the end panics: the program stops with exit status 101.
    println!("{}", numbers[index]);
}
`,
  },
  {
    group: 'When things go wrong',
    id: 'fuel',
    title: 'Out of fuel (a long loop)',
    mode: 'release',
    code: `// Every run has a budget of "fuel", about one unit per WebAssembly
// instruction. This loop needs far more than that, so it is stopped.
// (Release mode spends the fuel quickly; in Debug mode the time limit
// may come first.)
fn main() {
    let mut x: u64 = 1;
    for i in 0..u64::MAX {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    println!("{x}");
}
`,
  },
  {
    group: 'When things go wrong',
    id: 'timeout',
    title: 'Time limit (loop {})',
    code: `// An empty loop burns almost no fuel, but it never ends:
// the sandbox stops it at the time limit.
fn main() {
    println!("starting an endless loop...");
    loop {}
}
`,
  },
  {
    group: 'When things go wrong',
    id: 'stack',
    title: 'Stack overflow',
    code: `// No base case: every call adds a stack frame until the stack runs out.
fn depth(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 16]);
    frame[0] + depth(n + 1)
}

fn main() {
    println!("{}", depth(0));
}
`,
  },
  {
    group: 'When things go wrong',
    id: 'memory',
    title: 'Out of memory',
    code: `fn main() {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // One MiB at a time, until the sandbox's memory limit is reached.
        chunks.push(vec![1; 1 << 20]);
        println!("{} MiB allocated", chunks.len());
    }
}
`,
  },
];

// -----------------------------------------------------------------------------------------------
// Elements and state

const $ = (id) => document.getElementById(id);
const ui = {
  app: document.querySelector('.app'),
  run: $('run'),
  runLabel: $('run-label'),
  action: $('action'),
  tools: $('tools'),
  channel: $('channel'),
  optionsToggle: $('options-toggle'),
  optionsPanel: $('options-panel'),
  optionsClose: $('options-close'),
  backtrace: $('backtrace'),
  asmFlavor: $('asm-flavor'),
  demangle: $('demangle'),
  processAsm: $('process-asm'),
  aliasing: $('aliasing'),
  cancel: $('cancel'),
  edition: $('edition'),
  mode: $('mode'),
  stdinToggle: $('stdin-toggle'),
  stdinDot: $('stdin-dot'),
  stdinPanel: $('stdin-panel'),
  stdin: $('stdin'),
  examples: $('examples'),
  share: $('share'),
  sharePanel: $('share-panel'),
  shareUrl: $('share-url'),
  copyLink: $('copy-link'),
  shareStatus: $('share-status'),
  shareClose: $('share-close'),
  shortLink: $('short-link'),
  cratesToggle: $('crates-toggle'),
  cratesPanel: $('crates-panel'),
  cratesList: $('crates-list'),
  cratesHelp: $('crates-help'),
  cratesClose: $('crates-close'),
  badge: $('badge'),
  detail: $('detail'),
  meta: $('meta'),
  output: $('output'),
  notice: $('notice'),
  noticeText: $('notice-text'),
  retry: $('retry'),
  restore: $('restore'),
  explain: $('explain'),
  outStdout: $('out-stdout'),
  stdout: $('stdout'),
  outStderr: $('out-stderr'),
  stderr: $('stderr'),
  outCompiler: $('out-compiler'),
  diagnostics: $('diagnostics'),
  compilerDetails: $('compiler-details'),
  compilerOutput: $('compiler-output'),
  empty: $('empty'),
  liveInput: $('live-input'),
  inputLine: $('input-line'),
  inputSend: $('input-send'),
  inputClose: $('input-close'),
};

// While a program is put in the editor by the page itself (start-up, shared link), edits are not
// the user's: they must not clear the link in the address bar.
let loading = false;
const editor = new Editor($('editor'), {
  onChange: () => {
    if (!loading) programChanged();
  },
  onRun: () => run(),
  describedBy: 'editor-help',
});
const files = new FileList($('files'), editor, { onChange: () => programChanged() });
const tabs = new Tabs($('tabs'), $('panel-run').parentElement);

// While a run is under way: {started, timer, cancel(), send(message), inputOpen}; `send` and
// `inputOpen` (the program's input can still be typed) only on a live run.
let running = null;
let retryTimer = null;

// -----------------------------------------------------------------------------------------------
// Persistence (localStorage) and sharing (URL fragment)

/**
 * The program as the API takes it: `code` is the text of src/main.rs, or, with modules, the list
 * `[{name, content}]` of every file.
 */
function currentProgram() {
  const all = editor.files();
  return {
    code: all.length === 1 && all[0].name === MAIN ? all[0].content : all,
    edition: ui.edition.value,
    mode: ui.mode.value,
    stdin: ui.stdin.value,
  };
}

/** Every file of a program: `[{name, content}]` whichever form its `code` has. */
function filesOf(program) {
  return typeof program.code === 'string' ? [{ name: MAIN, content: program.code }] : program.code;
}

/** File name → text, the sources that diagnostics are about. */
function sourcesOf(program) {
  return new Map(filesOf(program).map((f) => [f.name, f.content]));
}

/** A saved or shared `code` made safe: a string, or a list of files with src/main.rs first. */
function validCode(code) {
  if (typeof code === 'string') return code;
  if (!Array.isArray(code)) return null;
  const list = code.filter((f) => f && typeof f.name === 'string' && typeof f.content === 'string');
  if (!list.some((f) => f.name === MAIN)) return null;
  return [...list.filter((f) => f.name === MAIN), ...list.filter((f) => f.name !== MAIN)];
}

/** Puts a program in the page. `undoable` (one file only) keeps the old text one Ctrl+Z away. */
function applyProgram(p, { undoable = false, show = null } = {}) {
  const code = validCode(p.code);
  loading = true;
  try {
    if (typeof code === 'string' && undoable && editor.files().length === 1) editor.setValue(code, { undoable });
    else if (code !== null) editor.setFiles(filesOf({ code }), show ?? MAIN);
  } finally {
    loading = false;
  }
  files.render();
  if (EDITIONS.includes(p.edition)) ui.edition.value = p.edition;
  if (MODES.includes(p.mode)) ui.mode.value = p.mode;
  if ([...ui.channel.options].some((o) => o.value === p.channel)) ui.channel.value = p.channel;
  if (typeof p.stdin === 'string') ui.stdin.value = p.stdin;
  editor.setDiagnostics([]);
  updateStdinDot();
  updateAction();
}

let saveTimer = null;
function save() {
  clearTimeout(saveTimer);
  saveTimer = null;
  try {
    const state = {
      ...currentProgram(),
      file: editor.file,
      channel: ui.channel.value,
      action: ui.action.value,
      backtrace: ui.backtrace.checked,
      stdinOpen: !ui.stdinPanel.hidden,
    };
    localStorage.setItem(STORAGE_KEY, JSON.stringify(state));
  } catch {
    // Private mode or a full quota: the page still works, it just forgets.
  }
}
function saveSoon() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(save, 250);
}

function loadSaved() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
  } catch {
    return null;
  }
}

function toBase64Url(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text) {
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

async function pipeBytes(bytes, transform) {
  const stream = new Blob([bytes]).stream().pipeThrough(transform);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * The fragment for a program: `#z=` + base64url(deflate-raw(JSON)), or `#j=` + base64url(JSON)
 * in browsers without CompressionStream. Nothing is stored on the server.
 */
async function encodeShare(program) {
  const json = { c: program.code, e: program.edition, m: program.mode };
  if (typeof program.code !== 'string') json.c = program.code.map((f) => [f.name, f.content]);
  if (program.stdin) json.i = program.stdin;
  const bytes = new TextEncoder().encode(JSON.stringify(json));
  if (typeof CompressionStream === 'function') {
    return 'z=' + toBase64Url(await pipeBytes(bytes, new CompressionStream('deflate-raw')));
  }
  return 'j=' + toBase64Url(bytes);
}

/** The program in a fragment made by `encodeShare`; null when there is none, throws when broken. */
async function decodeShare(hash) {
  const m = /^#?([zj])=([A-Za-z0-9_-]+)$/.exec(hash);
  if (!m) return null;
  let bytes = fromBase64Url(m[2]);
  if (m[1] === 'z') bytes = await pipeBytes(bytes, new DecompressionStream('deflate-raw'));
  const json = JSON.parse(new TextDecoder().decode(bytes));
  const code = Array.isArray(json.c) ? json.c.map(([name, content]) => ({ name, content })) : String(json.c ?? '');
  return { code, edition: json.e, mode: json.m, stdin: String(json.i ?? '') };
}

function shareLink(fragment) {
  return location.origin + location.pathname + '#' + fragment;
}

async function openShare() {
  const url = shareLink(await encodeShare(currentProgram()));
  history.replaceState(null, '', url);
  ui.shareUrl.value = url;
  ui.shareStatus.textContent = '';
  ui.sharePanel.hidden = false;
  ui.copyLink.focus();
  ui.shareUrl.scrollLeft = 0;
}

/**
 * Stores the program on the server (`POST meta/gist`) and shows a short link, `?gist=ID`, in place
 * of the self-contained one; servers without a store say why in the share panel.
 */
async function makeShortLink() {
  ui.shareStatus.textContent = 'Storing the program…';
  const program = currentProgram();
  let response;
  let data = null;
  let text = '';
  try {
    response = await fetch('meta/gist', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      // play.rust-lang.org's names: `version` is the channel.
      body: JSON.stringify({ code: program.code, version: ui.channel.value, mode: program.mode, edition: program.edition }),
    });
    text = await response.text();
    data = JSON.parse(text);
  } catch {
    data = null;
  }
  if (response?.ok && typeof data?.id === 'string') {
    const url = typeof data.url === 'string' && /^https?:\/\//.test(data.url)
      ? data.url
      : `${location.origin}${location.pathname}?gist=${encodeURIComponent(data.id)}`;
    ui.shareUrl.value = url;
    history.replaceState(null, '', url);
    ui.shareStatus.textContent = 'Short link made: the program is stored on the server.' +
      (program.stdin ? ' It does not hold the Stdin text; the long link does.' : '');
    ui.copyLink.focus();
    return;
  }
  ui.shareStatus.textContent = response
    ? `No short link: ${describeHttpError(response, data, text, 'stored programs').notice} The link above holds the whole program.`
    : 'No short link: the server could not be reached. The link above holds the whole program.';
}

function closeShare() {
  ui.sharePanel.hidden = true;
  ui.share.focus();
}

async function copyLink() {
  const url = ui.shareUrl.value;
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch {
    ui.shareUrl.focus();
    ui.shareUrl.select();
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
  }
  ui.shareStatus.textContent = copied
    ? `Link copied (${url.length.toLocaleString('en-US')} characters).`
    : 'Press Ctrl+C (⌘C) to copy the selected link.';
  if (!copied) {
    ui.shareUrl.focus();
    ui.shareUrl.select();
  }
}

// Updates the open share panel and forgets a stale link in the address bar when the program changes.
let shareTimer = null;
function programChanged() {
  saveSoon();
  updateAction();
  // The link in the address bar (a fragment or a short link) no longer shows this program.
  if (location.hash || location.search) history.replaceState(null, '', location.pathname);
  if (!ui.sharePanel.hidden) {
    clearTimeout(shareTimer);
    shareTimer = setTimeout(async () => {
      ui.shareUrl.value = shareLink(await encodeShare(currentProgram()));
      ui.shareStatus.textContent = 'Link updated to the current program.';
    }, 300);
  }
}

// -----------------------------------------------------------------------------------------------
// Running

const STATUS = {
  ok: { label: 'Success', kind: 'ok' },
  compileError: { label: 'Compile error', kind: 'error' },
  runtimeError: { label: 'Runtime error', kind: 'error' },
  outOfFuel: { label: 'Out of fuel', kind: 'limit' },
  timeout: { label: 'Time limit', kind: 'limit' },
  memoryLimit: { label: 'Memory limit', kind: 'limit' },
  stackOverflow: { label: 'Stack overflow', kind: 'limit' },
  outputLimit: { label: 'Output limit', kind: 'limit' },
};

/** One or two sentences that say what a status means and what to do about it. */
function explanation(r) {
  switch (r.status) {
    case 'ok':
      return null;
    case 'compileError':
      return 'rustc rejected the program, so it did not run. Each error is listed below and marked in the editor: click one to jump to its line.';
    case 'runtimeError':
      if (r.exitCode === 101) return 'The program panicked: the panic message and where it happened are in the standard error below.';
      if (r.exitCode != null) return `The program ended with exit status ${r.exitCode} (for example through std::process::exit); status 0 means success.`;
      return 'The program crashed inside the sandbox (a WebAssembly trap), so it was stopped.';
    case 'outOfFuel':
      return 'The program used up its fuel, the budget of instructions (about one unit per WebAssembly instruction) each run gets, and was stopped. Look for an endless or very long loop; Release mode needs fewer instructions for heavy work.';
    case 'timeout':
      return 'The program ran past the time limit and was stopped. It may be stuck in a loop, or waiting for input that never comes.';
    case 'memoryLimit':
      return 'The program tried to use more memory than the sandbox allows and was stopped.';
    case 'stackOverflow':
      return 'The program used more stack than the sandbox allows, usually through recursion that never ends, and was stopped.';
    case 'outputLimit':
      return 'The program printed more output than the sandbox keeps, so it was stopped; the output below is cut at the limit.';
    default:
      return null;
  }
}

function formatMs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function setBadge(label, kind) {
  ui.badge.textContent = label;
  ui.badge.className = 'badge ' + kind;
}

function setMeta(parts) {
  ui.meta.replaceChildren(
    ...parts.map((text) => {
      const span = document.createElement('span');
      span.textContent = text;
      return span;
    }),
  );
}

function resetOutput() {
  for (const el of [ui.notice, ui.explain, ui.outStdout, ui.outStderr, ui.outCompiler, ui.retry, ui.restore]) {
    el.hidden = true;
  }
  ui.empty.hidden = true;
  ui.output.classList.remove('compile-failed');
  ui.outStderr.classList.remove('panicked');
  clearInterval(retryTimer);
}

/** A message above the output; `retry` adds a Try again button, disabled for `retryAfter` s. */
function showNotice(text, { retry = false, retryAfter = 0, info = false } = {}) {
  ui.noticeText.textContent = text;
  ui.notice.classList.toggle('info', info);
  ui.notice.hidden = false;
  ui.empty.hidden = true;
  clearInterval(retryTimer);
  ui.retry.hidden = !retry;
  if (!retry) return;
  let left = Math.ceil(retryAfter);
  const tick = () => {
    ui.retry.disabled = left > 0;
    ui.retry.textContent = left > 0 ? `Try again (${left} s)` : 'Try again';
    if (left-- <= 0) clearInterval(retryTimer);
  };
  tick();
  if (retryAfter > 0) retryTimer = setInterval(tick, 1000);
}

function setRunning(on) {
  ui.app.classList.toggle('running', on);
  ui.run.setAttribute('aria-disabled', String(on));
  ui.cancel.hidden = !on;
  ui.output.setAttribute('aria-busy', String(on));
  if (!on) updateAction();
}

// -----------------------------------------------------------------------------------------------
// Run, Build or Test

/** What the main button does, and the request fields that make `/execute` do it. */
const ACTIONS = {
  run: { label: 'Run', busy: 'Running', fields: {} },
  build: { label: 'Build', busy: 'Building', fields: { crateType: 'lib' } },
  test: { label: 'Test', busy: 'Testing', fields: { tests: true } },
};

/**
 * The action Auto picks, as play.rust-lang.org does: tests without a `main` are tested, other
 * code without a `main` is built, and a program with one is run.
 */
function autoAction(program) {
  const all = filesOf(program);
  const text = all.map((f) => f.content).join('\n');
  const main = all.find((f) => f.name === MAIN)?.content ?? '';
  const hasMain = /\bfn\s+main\s*\(/.test(main);
  if (!hasMain && /#\s*\[\s*test\s*\]/.test(text)) return 'test';
  return hasMain ? 'run' : 'build';
}

function currentAction() {
  return ui.action.value === 'auto' ? autoAction(currentProgram()) : ui.action.value;
}

/** Shows the chosen action on the main button and in the Auto option. */
function updateAction() {
  const action = ACTIONS[currentAction()];
  ui.action.options[0].textContent = `Auto: ${action.label}`;
  if (!running) ui.runLabel.textContent = action.label;
}

/** The fields every request carries besides the program: channel and backtrace. */
function commonFields() {
  return { channel: ui.channel.value, backtrace: ui.backtrace.checked };
}

/** True when every file is blank. */
function isEmpty(program) {
  return filesOf(program).every((f) => !f.content.trim());
}

async function run() {
  if (running) return;
  const action = ACTIONS[currentAction()];
  const program = { ...currentProgram(), ...commonFields(), ...action.fields };
  tabs.select('run');
  if (isEmpty(program)) {
    resetOutput();
    setBadge('Nothing to run', 'idle');
    ui.detail.textContent = 'The editor is empty.';
    setMeta([]);
    showNotice('Write a program in the editor, or pick one from the Examples menu.', { info: true });
    return;
  }
  save();
  const started = performance.now();
  const tick = () => {
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    ui.runLabel.textContent = `${action.busy} ${secs} s`;
  };
  const state = { started, timer: setInterval(tick, 100), cancel: () => {}, send: null };
  running = state;
  tick();
  setRunning(true);
  setBadge(action.busy, 'running');
  ui.detail.textContent = action === ACTIONS.build ? 'Compiling…' : 'Compiling and running…';
  setMeta([]);
  if ((await runLive(program, state)) === 'fallback') await runOverHttp(program, state);
}

// -----------------------------------------------------------------------------------------------
// Live runs over the WebSocket (`GET live`, see README.md)

/** How long the WebSocket may take to open and start compiling before the page uses HTTP. */
const LIVE_START_TIMEOUT_MS = 4000;
/** How long to wait for the server to confirm a kill before closing the socket anyway. */
const KILL_CONFIRM_TIMEOUT_MS = 1500;

function liveUrl() {
  const url = new URL('live', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/**
 * Runs `program` over the live WebSocket, showing its output as it arrives. Resolves with
 * 'fallback' when the socket cannot be used (it does not connect, closes before the server starts
 * compiling, or the server refuses the request before compiling it: the HTTP API then gives the
 * precise status, such as 413 or 503 with Retry-After), and with 'done' once the run has been shown.
 */
function runLive(program, state) {
  return new Promise((resolve) => {
    let socket;
    try {
      if (typeof WebSocket !== 'function') throw new Error('this browser has no WebSocket');
      socket = new WebSocket(liveUrl());
    } catch {
      resolve('fallback');
      return;
    }
    // connecting → open (run sent) → compiling → compiled (run started, or compile failed)
    let phase = 'connecting';
    let settled = false;
    let stopping = false;
    let streaming = false; // the output panes show this run's output
    let killTimer = null;
    const startTimer = setTimeout(() => {
      if (phase === 'connecting' || phase === 'open') settle('fallback');
    }, LIVE_START_TIMEOUT_MS);

    function settle(outcome) {
      if (settled) return;
      settled = true;
      clearTimeout(startTimer);
      clearTimeout(killTimer);
      socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
      try {
        socket.close();
      } catch {
        // already closed
      }
      if (outcome === 'done') {
        finishRun();
        countRun();
      }
      resolve(outcome);
    }

    function send(message) {
      if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }

    state.cancel = () => {
      if (settled || stopping) return;
      if (phase === 'connecting' || phase === 'open') {
        // Nothing started on the server yet: closing is enough.
        showStopped(state, streaming);
        settle('done');
        return;
      }
      stopping = true;
      ui.detail.textContent = 'Stopping…';
      send({ type: 'kill' });
      // The server answers `killed`; closing the socket stops the run as well, so do not wait long.
      killTimer = setTimeout(() => {
        showStopped(state, streaming);
        settle('done');
      }, KILL_CONFIRM_TIMEOUT_MS);
    };

    socket.onopen = () => {
      phase = 'open';
      send({ type: 'run', ...program });
      // Text in the Stdin panel is the program's whole input, as with `program < file`; with
      // the panel empty, the input stays open for the Input line under the output.
      if (program.stdin) send({ type: 'stdinClose' });
    };

    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      switch (message.type) {
        case 'compiling':
          phase = 'compiling';
          clearTimeout(startTimer);
          if (!stopping) {
            setBadge('Compiling', 'running');
            ui.detail.textContent = 'Compiling…';
          }
          break;
        case 'compiled':
          phase = 'compiled';
          if (stopping) break;
          showCompiled(message, sourcesOf(program));
          streaming = Boolean(message.success);
          if (message.success && !program.stdin) {
            state.send = send;
            state.inputOpen = true;
            showLiveInput();
          }
          break;
        case 'stdout':
        case 'stderr':
          if (streaming && typeof message.data === 'string') appendOutput(message.type, message.data);
          break;
        case 'done':
          flushOutput();
          if (typeof message.status === 'string') {
            showResult(message, state.started, sourcesOf(program), streams.text, { inputOpen: state.inputOpen });
          } else {
            showLiveError(state, 'The server sent a result the page does not understand.', streaming);
          }
          settle('done');
          break;
        case 'killed':
          showStopped(state, streaming);
          settle('done');
          break;
        case 'error':
          if (stopping) {
            showStopped(state, streaming);
            settle('done');
          } else if (phase !== 'compiled') {
            // Refused before compiling (too large, bad request, busy): shown as the HTTP API's
            // answer to the same request, the one way every refusal is explained.
            settle('fallback');
          } else {
            showLiveError(state, String(message.error ?? 'unknown error'), streaming, message);
            settle('done');
          }
          break;
        default:
          break;
      }
    };

    socket.onclose = () => {
      if (settled) return;
      if (phase === 'connecting' || phase === 'open') {
        settle('fallback');
      } else if (stopping) {
        showStopped(state, streaming);
        settle('done');
      } else {
        showConnectionLost(state, streaming);
        settle('done');
      }
    };
  });
}

/** The output of a live run as it streams in: shown text, and text not yet drawn. */
const streams = { text: { stdout: '', stderr: '' }, pending: { stdout: '', stderr: '' }, frame: 0 };

/** The `compiled` message: diagnostics marked at once, and empty output panes for what comes. */
function showCompiled(message, sources) {
  resetOutput();
  streams.text = { stdout: '', stderr: '' };
  streams.pending = { stdout: '', stderr: '' };
  const diagnostics = Array.isArray(message.diagnostics) ? message.diagnostics : [];
  showDiagnostics(diagnostics, message.compilerOutput ?? '', sources, message.success);
  if (!message.success) return;
  setBadge('Running', 'running');
  ui.detail.textContent = 'Running… output appears as the program writes it.';
  ui.stdout.textContent = '';
  ui.stderr.textContent = '';
  ui.outStdout.hidden = false;
  ui.output.classList.add('streaming');
  // The output is readable now: undim it, and let screen readers hear prompts as they come.
  ui.output.setAttribute('aria-busy', 'false');
}

function appendOutput(kind, data) {
  streams.text[kind] += data;
  streams.pending[kind] += data;
  if (!streams.frame) streams.frame = requestAnimationFrame(flushOutput);
}

/** Draws the output that arrived since the last frame, following it if the view was at the end. */
function flushOutput() {
  cancelAnimationFrame(streams.frame);
  streams.frame = 0;
  const box = ui.output;
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  for (const kind of ['stdout', 'stderr']) {
    const text = streams.pending[kind];
    if (!text) continue;
    streams.pending[kind] = '';
    const pre = kind === 'stdout' ? ui.stdout : ui.stderr;
    const last = pre.lastChild;
    if (last && last.nodeType === Node.TEXT_NODE) last.appendData(text);
    else pre.append(text);
    if (kind === 'stderr') ui.outStderr.hidden = false;
  }
  if (atEnd) box.scrollTop = box.scrollHeight;
}

function showLiveInput() {
  ui.liveInput.hidden = false;
  ui.inputLine.disabled = false;
  ui.inputSend.disabled = false;
  ui.inputClose.disabled = false;
  ui.inputLine.value = '';
  ui.inputLine.placeholder = 'A line for the program: Enter sends it';
}

function hideLiveInput() {
  const hadFocus = ui.liveInput.contains(document.activeElement);
  ui.liveInput.hidden = true;
  if (hadFocus) editor.focus();
}

/** Sends the input line to the program, and shows it in the output as a terminal would. */
function sendInputLine(e) {
  e.preventDefault();
  if (!running?.send || ui.inputLine.disabled) return;
  const line = ui.inputLine.value + '\n';
  running.send({ type: 'stdin', data: line });
  flushOutput();
  const echo = document.createElement('span');
  echo.className = 'echo';
  echo.title = 'Your input';
  echo.textContent = line;
  ui.stdout.append(echo);
  ui.inputLine.value = '';
  ui.output.scrollTop = ui.output.scrollHeight;
}

/** Ends the program's input: its next read gets end-of-file. */
function closeInput() {
  if (!running?.send || ui.inputLine.disabled) return;
  running.send({ type: 'stdinClose' });
  running.inputOpen = false;
  // The input line is disabled below, which would drop the focus on the floor.
  if (ui.liveInput.contains(document.activeElement)) editor.focus();
  ui.inputLine.value = '';
  ui.inputLine.placeholder = 'Input ended';
  ui.inputLine.disabled = true;
  ui.inputSend.disabled = true;
  ui.inputClose.disabled = true;
}

/** The run was cancelled: the server stopped it (`ran`: after its output began to show). */
function showStopped(state, ran) {
  flushOutput();
  const elapsed = performance.now() - state.started;
  if (!ran) resetOutput();
  setBadge('Stopped', 'idle');
  ui.detail.textContent = `Stopped after ${formatMs(elapsed)}.`;
  setMeta([`Total ${formatMs(elapsed)}`]);
  showNotice(
    ran
      ? 'You stopped the program, and the server ended it. What it printed until then is below.'
      : 'You stopped the run before the program started; nothing ran.',
    { info: true },
  );
}

/** The live connection broke after the server had started on the run. */
function showConnectionLost(state, ran) {
  flushOutput();
  const elapsed = performance.now() - state.started;
  if (!ran) resetOutput();
  setBadge('Connection lost', 'error');
  ui.detail.textContent = 'The connection to the server closed before the run finished.';
  setMeta([`Total ${formatMs(elapsed)}`]);
  showNotice(
    `The live connection to ${liveUrl()} closed before the result came: the server may have restarted, or something between it and this browser ended the connection.${ran ? ' What the program printed until then is below.' : ''} Try again.`,
    { retry: true },
  );
}

/** The server failed the run after compiling it (for example no run slot was free). */
function showLiveError(state, message, ran, { status, retryAfter } = {}) {
  flushOutput();
  const elapsed = performance.now() - state.started;
  if (!ran) resetOutput();
  setMeta([`Total ${formatMs(elapsed)}`]);
  const busy = status === 503 || /^the server is busy\b/i.test(message);
  const wait = Number(retryAfter ?? /retry in (\d+) s/.exec(message)?.[1] ?? 0);
  if (busy) {
    setBadge('Server busy', 'limit');
    ui.detail.textContent = wait > 0
      ? `The server is busy; it asks to try again in ${wait} s.`
      : 'The server is busy; try again in a moment.';
    showNotice(
      `The server compiled the program but had no room to run it right now. Your program is unchanged. (Server: ${message})`,
      { retry: true, retryAfter: wait },
    );
  } else {
    setBadge('Server error', 'error');
    ui.detail.textContent = 'The server failed to run the program.';
    showNotice(`Server: ${message}`, { retry: true });
  }
}

// -----------------------------------------------------------------------------------------------
// Runs through `POST execute`, where WebSockets do not get through

async function runOverHttp(program, state) {
  const controller = new AbortController();
  state.cancel = () => controller.abort();
  const { started } = state;
  let response;
  let text;
  try {
    response = await fetch('execute', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(program),
      signal: controller.signal,
    });
    text = await response.text();
  } catch (err) {
    const elapsed = performance.now() - started;
    finishRun();
    resetOutput();
    setMeta([]);
    if (err.name === 'AbortError') {
      setBadge('Cancelled', 'idle');
      ui.detail.textContent = `Stopped waiting after ${formatMs(elapsed)}.`;
      showNotice('The run was cancelled; its result, if the server still produces one, is ignored.', { info: true });
    } else {
      setBadge('Server unreachable', 'error');
      ui.detail.textContent = 'Could not reach the playground server.';
      const target = new URL('execute', location.href).href;
      showNotice(
        `The request to ${target} failed before any answer came back: the server may be stopped or restarting, or the network is down. Your code is kept in this browser; try again once the server is back.`,
        { retry: true },
      );
    }
    countRun();
    return;
  }
  finishRun();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch {
    data = null;
  }
  try {
    if (response.ok && data && typeof data.status === 'string') showResult(data, started, sourcesOf(program));
    else showHttpError(response, data, text);
  } finally {
    countRun();
  }
}

/**
 * Ends a run: brings the outcome into view when it is below the screen (phones stack the output
 * under the editor), and counts finished runs on `<html data-runs>` so tests can wait for one.
 */
function countRun() {
  const summary = ui.badge.parentElement;
  if (summary.getBoundingClientRect().top > window.innerHeight - 80) {
    summary.scrollIntoView({ block: 'start', behavior: 'smooth' });
  }
  const root = document.documentElement;
  root.dataset.runs = String((Number(root.dataset.runs) || 0) + 1);
}

function finishRun() {
  if (!running) return;
  clearInterval(running.timer);
  running = null;
  setRunning(false);
  hideLiveInput();
  ui.output.classList.remove('streaming');
}

function cancelRun() {
  running?.cancel();
}

function showHttpError(response, data, text) {
  resetOutput();
  setMeta([`HTTP ${response.status}`]);
  const e = describeHttpError(response, data, text);
  setBadge(e.badge, e.kind);
  ui.detail.textContent = e.detail;
  showNotice(e.notice, { retry: e.retry, retryAfter: e.wait });
}

/**
 * Shows a finished run (the answer of `POST execute`, or the `done` message of a live run).
 * `streamed`, for a live run, is the output already on screen: it stays (with the input lines
 * echoed in it) when it is what the server reports, and is replaced otherwise.
 */
function showResult(r, started, sources, streamed = null, { inputOpen = false } = {}) {
  resetOutput();
  const info = STATUS[r.status] ?? { label: r.status, kind: 'error' };
  const panicked = r.status === 'runtimeError' && r.exitCode === 101;
  setBadge(panicked ? 'Panicked' : info.label, info.kind);
  ui.detail.textContent = r.exitDetail;
  const timings = r.timings ?? {};
  const compiled = r.status !== 'compileError';
  const meta = [`Compile ${formatMs(timings.compileMs ?? 0)}`];
  if (compiled) {
    meta.push(`Run ${formatMs(timings.runMs ?? 0)}`);
    meta.push(`Fuel ${Number(r.fuelConsumed ?? 0).toLocaleString('en-US')}`);
  }
  meta.push(`Total ${formatMs(performance.now() - started)}`);
  setMeta(meta);

  let explain = explanation(r);
  if (r.status === 'timeout' && inputOpen) {
    explain += ' Its input was still open: if it reads until the end of its input, press End input (Ctrl+D) under the output once you have typed it all, or put the input in the Stdin panel.';
  }
  if (r.truncated && r.status !== 'outputLimit') {
    explain = (explain ? explain + ' ' : '') + 'Some output was cut at the size limit.';
  }
  if (explain) {
    ui.explain.textContent = explain;
    ui.explain.className = 'explain ' + info.kind;
    ui.explain.hidden = false;
  }

  // The compiler's messages may come first in `stderr`, as cargo prints them; they are shown
  // under Compiler already.
  const compilerOutput = r.compilerOutput ?? '';
  const stderr = compilerOutput && r.stderr.startsWith(compilerOutput) ? r.stderr.slice(compilerOutput.length) : r.stderr;
  if (compiled) {
    if (streamed?.stdout !== r.stdout) ui.stdout.textContent = r.stdout;
    ui.outStdout.hidden = false;
    if (streamed?.stderr !== stderr) ui.stderr.textContent = stderr;
    ui.outStderr.hidden = !stderr;
    ui.outStderr.classList.toggle('panicked', panicked);
  }

  const diagnostics = Array.isArray(r.diagnostics) ? r.diagnostics : [];
  showDiagnostics(diagnostics, compilerOutput, sources, compiled);
}

/** Lists the compiler's messages, marks them in the editor, and shows its full output. */
function showDiagnostics(serverDiagnostics, compilerOutput, sources, compiled) {
  const diagnostics = placeIn(serverDiagnostics, sources);
  editor.setDiagnostics(diagnostics, sources);
  const items = diagnosticItems(diagnostics, jumpToDiagnostic);
  ui.diagnostics.replaceChildren(...items);
  ui.diagnostics.hidden = items.length === 0;
  renderCompilerOutput(compilerOutput);
  ui.outCompiler.hidden = !compilerOutput && items.length === 0;
  ui.compilerDetails.open = !compiled;
  ui.output.classList.toggle('compile-failed', !compiled);
  const counts = countText(diagnostics);
  $('compiler-heading').textContent = counts ? `Compiler · ${counts}` : 'Compiler';
}

/** Shows the file of diagnostic `id` and puts the caret on it. */
function jumpToDiagnostic(id, d) {
  const file = editor.fileOfDiagnostic(id) ?? d.file ?? MAIN;
  if (file !== editor.file) files.show(file);
  editor.goToDiagnostic(id, d.line, d.column ?? 1);
}

function renderCompilerOutput(text) {
  const esc = (s) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]);
  const html = text
    .split('\n')
    .map((line) => {
      let out = esc(line);
      out = out.replace(/^(error(?:\[E\d+\])?)(?=:)/, '<span class="c-error">$1</span>');
      out = out.replace(/^(warning)(?=:)/, '<span class="c-warning">$1</span>');
      out = out.replace(/^(\s*= )?(note|help)(?=:)/, (m, pre, word) => `${pre ?? ''}<span class="c-note">${word}</span>`);
      out = out.replace(
        /(--&gt; )((src\/[\w/]+\.rs):(\d+):(\d+))/,
        '$1<span class="c-loc" role="link" tabindex="0" data-file="$3" data-line="$4" data-column="$5">$2</span>',
      );
      return out;
    })
    .join('\n');
  ui.compilerOutput.innerHTML = html;
  ui.compilerDetails.hidden = !text;
}

function jumpFromCompilerOutput(e) {
  const loc = e.target.closest('.c-loc');
  if (!loc) return;
  if (e.type === 'keydown' && e.key !== 'Enter' && e.key !== ' ') return;
  e.preventDefault();
  if (loc.dataset.file !== editor.file && editor.files().some((f) => f.name === loc.dataset.file)) files.show(loc.dataset.file);
  editor.goTo(Number(loc.dataset.line), Number(loc.dataset.column));
}

// -----------------------------------------------------------------------------------------------
// The crates list (GET meta/crates), fetched when the panel first opens

let cratesLoaded = false;
async function loadCrates() {
  ui.cratesList.replaceChildren();
  let crates;
  try {
    const response = await fetch('meta/crates');
    if (!response.ok) throw new Error(`status ${response.status}`);
    crates = (await response.json()).crates;
  } catch {
    ui.cratesHelp.textContent = 'The list of crates could not be loaded.';
    return;
  }
  cratesLoaded = true;
  if (crates.length === 0) {
    ui.cratesHelp.textContent = 'This server offers no crates: programs can use the standard library only.';
    return;
  }
  for (const c of crates) {
    const li = document.createElement('li');
    const name = document.createElement('code');
    name.textContent = c.id;
    const version = document.createElement('span');
    version.className = 'muted';
    version.textContent = ` ${c.version}`;
    li.append(name, version);
    if (c.name !== c.id) li.title = `the ${c.name} package`;
    ui.cratesList.append(li);
  }
}

function setCratesOpen(open) {
  ui.cratesPanel.hidden = !open;
  ui.cratesToggle.setAttribute('aria-expanded', String(open));
  if (open && !cratesLoaded) loadCrates();
  if (!open) ui.cratesToggle.focus();
}

// -----------------------------------------------------------------------------------------------
// Tools (tools.js): each answers in its own output tab

/** Runs tool `kind` (a key of TOOLS) on the program and shows its answer in the tool's tab. */
async function runTool(kind) {
  const tool = TOOLS[kind];
  const program = { ...currentProgram(), ...commonFields() };
  const panel = tabs.panel(kind, tool.title);
  tabs.select(kind);
  if (isEmpty(program)) {
    showInPanel(panel, { badge: 'Nothing to do', kind: 'idle', detail: 'The editor is empty.' });
    return finishTool(panel);
  }
  const body = { ...program, ...ACTIONS[currentAction()].fields };
  if (kind === 'miri') body.aliasingModel = ui.aliasing.value;
  if (tool.target === 'asm') {
    Object.assign(body, {
      assemblyFlavor: ui.asmFlavor.value,
      demangleAssembly: ui.demangle.checked ? 'demangle' : 'mangle',
      processAssembly: ui.processAsm.checked ? 'filter' : 'raw',
    });
  }
  panel.setAttribute('aria-busy', 'true');
  showInPanel(panel, { badge: 'Working', kind: 'running', detail: `${tool.title}…` });
  const started = performance.now();
  let answer;
  try {
    answer = await callTool(tool, body);
  } catch {
    showInPanel(panel, {
      badge: 'Server unreachable',
      kind: 'error',
      detail: 'Could not reach the playground server.',
      notice: `The request to ${new URL(tool.path, location.href).href} failed before any answer came back: the server may be stopped or restarting, or the network is down.`,
    });
    return finishTool(panel);
  }
  const { response, data, text } = answer;
  const meta = `${tool.title} · ${formatMs(performance.now() - started)}`;
  if (!response.ok || !data || typeof data.success !== 'boolean') {
    const e = describeHttpError(response, data, text, tool.title);
    showInPanel(panel, { badge: e.badge, kind: e.kind, detail: e.detail, notice: e.notice, meta });
    return finishTool(panel);
  }
  showToolAnswer(kind, panel, data, sourcesOf(program), meta);
  finishTool(panel);
}

/** Shows a tool's 200 answer (`{success, exitDetail, code, stdout, stderr, diagnostics, truncated}`). */
function showToolAnswer(kind, panel, data, sources, meta) {
  const tool = TOOLS[kind];
  const diagnostics = placeIn(Array.isArray(data.diagnostics) ? data.diagnostics : [], sources);
  // Clippy's lints, and the errors of a program that did not compile, are marked in the editor.
  if (kind === 'clippy' || diagnostics.some((d) => d.level === 'error')) editor.setDiagnostics(diagnostics, sources);
  const counts = countText(diagnostics);
  let explain = data.success ? null : (tool.failed ?? `The program did not compile, so there is no ${tool.title} to show; the errors are below and marked in the editor.`);
  if (data.success && kind === 'clippy') explain = counts ? `Clippy's findings: ${counts}. Each is marked in the editor: click one to jump to it.` : 'Clippy found nothing to remark on.';
  if (data.truncated) explain = (explain ? explain + ' ' : '') + 'The output was cut at the size limit.';
  // play.rust-lang.org's macro expansion answers the expanded code as `stdout`; `code` otherwise.
  const result = typeof data.code === 'string' && data.code ? data.code : kind === 'expand' ? data.stdout : null;
  let code = tool.result && typeof result === 'string' && result ? result : null;
  if (kind === 'format' && data.success) {
    applyFormatted(data.code);
    code = null;
    explain = 'The code in the editor is formatted. Ctrl+Z in the editor brings back the code as it was.';
  }
  showInPanel(panel, {
    badge: data.success ? 'Done' : 'Failed',
    kind: data.success ? 'ok' : 'error',
    detail: data.exitDetail ?? '',
    meta,
    explain,
    code,
    codeTitle: tool.result,
    stdout: kind === 'miri' ? data.stdout ?? '' : null,
    stderr: data.stderr ?? '',
    items: diagnosticItems(diagnostics, jumpToDiagnostic),
  });
}

/** Rustfmt's answer replaces the code, one undo step per file it changed. */
function applyFormatted(code) {
  const formatted = typeof code === 'string' ? [{ name: MAIN, content: code }] : validCode(code) ?? [];
  for (const f of formatted) editor.replaceFile(f.name, f.content);
  programChanged();
}

function finishTool(panel) {
  panel.setAttribute('aria-busy', 'false');
  document.documentElement.dataset.tools = String((Number(document.documentElement.dataset.tools) || 0) + 1);
}

/** Fills the Channel menu with the channels the server has (`GET meta/versions`). */
async function loadChannels(chosen) {
  try {
    const response = await fetch('meta/versions');
    if (!response.ok) return;
    const versions = await response.json();
    const names = ['stable', 'beta', 'nightly'].filter((c) => versions[c]);
    ui.channel.replaceChildren(...names.map((c) => {
      const version = versions[c]?.rustc?.version;
      const option = new Option(c[0].toUpperCase() + c.slice(1), c);
      if (version) option.title = `rustc ${version}`;
      return option;
    }));
  } catch {
    // Stable, the one channel every server has, stays the only choice.
  }
  if ([...ui.channel.options].some((o) => o.value === chosen)) ui.channel.value = chosen;
}

function setOptionsOpen(open) {
  ui.optionsPanel.hidden = !open;
  ui.optionsToggle.setAttribute('aria-expanded', String(open));
  if (open) ui.backtrace.focus();
  else ui.optionsToggle.focus();
}

// -----------------------------------------------------------------------------------------------
// Stdin, examples, toasts

function updateStdinDot() {
  ui.stdinDot.hidden = ui.stdin.value.length === 0;
}

function setStdinOpen(open, { focus = false } = {}) {
  ui.stdinPanel.hidden = !open;
  ui.stdinToggle.setAttribute('aria-expanded', String(open));
  if (open && focus) ui.stdin.focus();
  saveSoon();
}

function fillExamples() {
  const groups = new Map();
  for (const ex of EXAMPLES) {
    if (!groups.has(ex.group)) {
      const og = document.createElement('optgroup');
      og.label = ex.group;
      groups.set(ex.group, og);
      ui.examples.append(og);
    }
    groups.get(ex.group).append(new Option(ex.title, ex.id));
  }
}

function loadExample(id) {
  const ex = EXAMPLES.find((e) => e.id === id);
  if (!ex) return;
  const hadModules = editor.files().length > 1;
  if (hadModules) keepReplaced(currentProgram());
  applyProgram({ code: ex.code, stdin: ex.stdin ?? '', mode: ex.mode }, { undoable: true });
  if (ex.stdin) setStdinOpen(true);
  programChanged();
  editor.focus();
  const mode = ex.mode ? ` Mode: ${ui.mode.selectedOptions[0].text}.` : '';
  toast(`Loaded “${ex.title}”.${mode} ` + (hadModules
    ? 'Your files are kept in this browser: Bring back my program restores them.'
    : 'Ctrl+Z in the editor brings back your previous code.'));
  if (hadModules) ui.restore.hidden = false;
}

let toastTimer = null;
function toast(text) {
  let el = $('toast');
  if (!el) {
    el = document.createElement('div');
    el.id = 'toast';
    el.className = 'toast';
    el.setAttribute('role', 'status');
    el.setAttribute('aria-live', 'polite');
    document.body.append(el);
  }
  el.textContent = text;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 4000);
}

// -----------------------------------------------------------------------------------------------
// Wiring

ui.run.addEventListener('click', run);
ui.cancel.addEventListener('click', cancelRun);
ui.liveInput.addEventListener('submit', sendInputLine);
ui.inputClose.addEventListener('click', closeInput);
ui.inputLine.addEventListener('keydown', (e) => {
  if (e.key.toLowerCase() === 'd' && e.ctrlKey && !e.altKey && !e.metaKey && !e.shiftKey) {
    e.preventDefault();
    closeInput();
  }
});
ui.retry.addEventListener('click', run);
ui.restore.addEventListener('click', restoreReplaced);
ui.share.addEventListener('click', openShare);
ui.copyLink.addEventListener('click', copyLink);
ui.shareClose.addEventListener('click', closeShare);
ui.shortLink.addEventListener('click', makeShortLink);
ui.sharePanel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeShare();
});
ui.shareUrl.addEventListener('focus', () => ui.shareUrl.select());
ui.cratesToggle.addEventListener('click', () => setCratesOpen(ui.cratesPanel.hidden));
ui.cratesClose.addEventListener('click', () => setCratesOpen(false));
ui.cratesPanel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') setCratesOpen(false);
});
ui.stdinToggle.addEventListener('click', () => setStdinOpen(ui.stdinPanel.hidden, { focus: true }));
ui.stdin.addEventListener('input', () => {
  updateStdinDot();
  programChanged();
});
ui.edition.addEventListener('change', programChanged);
ui.mode.addEventListener('change', programChanged);
ui.examples.addEventListener('change', () => {
  const id = ui.examples.value;
  ui.examples.value = '';
  loadExample(id);
});
ui.action.addEventListener('change', () => {
  updateAction();
  saveSoon();
});
ui.tools.addEventListener('change', () => {
  const tool = ui.tools.value;
  ui.tools.value = '';
  if (TOOLS[tool]) runTool(tool);
});
ui.channel.addEventListener('change', programChanged);
ui.backtrace.addEventListener('change', saveSoon);
ui.optionsToggle.addEventListener('click', () => setOptionsOpen(ui.optionsPanel.hidden));
ui.optionsClose.addEventListener('click', () => setOptionsOpen(false));
ui.optionsPanel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') setOptionsOpen(false);
});
ui.compilerOutput.addEventListener('click', jumpFromCompilerOutput);
ui.compilerOutput.addEventListener('keydown', jumpFromCompilerOutput);

document.addEventListener('keydown', (e) => {
  // In the editor, its own key binding has run the program already.
  if (e.defaultPrevented) return;
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.altKey) {
    e.preventDefault();
    run();
  }
});
window.addEventListener('pagehide', save);
window.addEventListener('hashchange', () => loadFromHash());

async function loadFromHash() {
  if (!location.hash || location.hash === '#') return false;
  let shared;
  try {
    shared = await decodeShare(location.hash);
  } catch {
    resetOutput();
    setBadge('Broken link', 'error');
    ui.detail.textContent = 'The shared link could not be read.';
    showNotice('The program in this link could not be decoded; it may have been cut short when it was copied. Your last program is shown instead.', { info: true });
    return false;
  }
  if (!shared) return false;
  openShared(shared);
  return true;
}

/** Keeps `program` in this browser for Bring back my program. */
function keepReplaced(program) {
  try {
    localStorage.setItem(REPLACED_KEY, JSON.stringify(program));
  } catch {
    // Without storage there is nothing to bring back later.
  }
}

/** Puts a shared program in the page, keeping the one it replaces. */
function openShared(shared) {
  const mine = currentProgram();
  applyProgram(shared);
  setStdinOpen(Boolean(shared.stdin));
  save();
  const same = JSON.stringify(validCode(shared.code)) === JSON.stringify(mine.code);
  if (!isEmpty(mine) && !same && !EXAMPLES.some((e) => e.code === mine.code)) {
    keepReplaced(mine);
    resetOutput();
    showNotice('You opened a shared program. The program you had before is kept in this browser.', { info: true });
    ui.restore.hidden = false;
  }
}

/**
 * Opens `?gist=ID`, a program stored on the server by Share's short link, with the options the
 * link names as play.rust-lang.org's do (`version` is the channel, `mode`, `edition`).
 */
async function loadFromGist() {
  const params = new URLSearchParams(location.search);
  const id = params.get('gist');
  if (!id) return false;
  let response;
  let data = null;
  let text = '';
  try {
    response = await fetch(`meta/gist/${encodeURIComponent(id)}`, { headers: { accept: 'application/json' } });
    text = await response.text();
    data = JSON.parse(text);
  } catch {
    data = null;
  }
  if (response?.ok && data && validCode(data.code) !== null) {
    openShared({ code: data.code, channel: params.get('version'), mode: params.get('mode'), edition: params.get('edition') });
    return true;
  }
  resetOutput();
  setBadge('Broken link', 'error');
  ui.detail.textContent = 'The shared program could not be loaded.';
  const why = response ? describeHttpError(response, data, text).notice : 'the server could not be reached';
  showNotice(`The program of this link (${id}) could not be loaded (${why}). Your last program is shown instead.`, { info: true });
  return false;
}

function restoreReplaced() {
  let previous = null;
  try {
    previous = JSON.parse(localStorage.getItem(REPLACED_KEY) || 'null');
  } catch {
    previous = null;
  }
  ui.notice.hidden = true;
  ui.restore.hidden = true;
  if (!previous) return;
  applyProgram(previous, { undoable: true, show: previous.file });
  setStdinOpen(Boolean(previous.stdin));
  programChanged();
  editor.focus();
  toast('Your program is back. Ctrl+Z in the editor returns to the shared one.');
}

async function init() {
  fillExamples();
  const saved = loadSaved();
  if (saved) {
    if (ACTIONS[saved.action] || saved.action === 'auto') ui.action.value = saved.action;
    ui.backtrace.checked = Boolean(saved.backtrace);
    applyProgram(saved, { show: saved.file });
    setStdinOpen(Boolean(saved.stdinOpen));
  } else {
    applyProgram({ code: DEFAULT_CODE });
  }
  await loadChannels(saved?.channel);
  if (!(await loadFromHash())) await loadFromGist();
  // Ready to type on computers; on touch screens the keyboard would pop up uninvited.
  if (matchMedia('(pointer: fine)').matches) editor.focus();
  document.documentElement.dataset.ready = 'true';
}

init();

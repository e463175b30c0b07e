// The playground's tools besides running: Rustfmt, Clippy, Miri, macro expansion and the compile
// targets (assembly, LLVM IR, MIR, HIR, WASM), each answered in an output tab of its own; and the
// pieces the run's output shares with them (diagnostic lists, HTTP errors explained).

import { MAIN } from './files.js';

/**
 * Each tool: the menu's name, its endpoint, extra request fields, what its result is called, and
 * a sentence for when it did not succeed.
 */
export const TOOLS = {
  format: { title: 'Rustfmt', path: 'format', result: 'Formatted code', failed: 'rustfmt could not format the program (usually because it does not parse); its messages are below. The code is unchanged.' },
  clippy: { title: 'Clippy', path: 'clippy', result: null, failed: 'The program did not compile, so Clippy could not check it; the errors are below and marked in the editor.' },
  miri: { title: 'Miri', path: 'miri', result: null, failed: 'Miri found a problem, or the program did not compile or ended with an error: the details are below.' },
  expand: { title: 'Expand macros', path: 'macro-expansion', result: 'Expanded code', failed: 'The macros could not be expanded; the compiler\'s messages are below.' },
  asm: { title: 'Assembly', path: 'compile', target: 'asm', result: 'Assembly', failed: null },
  'llvm-ir': { title: 'LLVM IR', path: 'compile', target: 'llvm-ir', result: 'LLVM IR', failed: null },
  mir: { title: 'MIR', path: 'compile', target: 'mir', result: 'MIR', failed: null },
  hir: { title: 'HIR', path: 'compile', target: 'hir', result: 'HIR', failed: null },
  wasm: { title: 'WASM', path: 'compile', target: 'wasm', result: 'WebAssembly (text)', failed: null },
};

/** The level of a diagnostic as the page shows it. */
function levelOf(d) {
  return d.level === 'error' ? 'error' : d.level === 'warning' ? 'warning' : 'note';
}

/** Diagnostics without a line that only count others ("aborting due to…", "2 warnings emitted"). */
function isSummary(d) {
  return d.line == null && /^(aborting due to|\d+ warnings? emitted|.*previous errors?; \d+ warnings? emitted)/.test(d.message);
}

/** "1 error, 2 warnings", or '' when there are none. */
export function countText(diagnostics) {
  const count = (level) => diagnostics.filter((d) => d.level === level && !isSummary(d)).length;
  const parts = [];
  for (const [level, n] of [['error', count('error')], ['warning', count('warning')]]) {
    if (n) parts.push(`${n} ${level}${n > 1 ? 's' : ''}`);
  }
  return parts.join(', ');
}

/**
 * The items of a diagnostics list: one per message, a button that calls `jump(id, d)` when the
 * message has a place in the code (`id` is its index in `diagnostics`).
 */
export function diagnosticItems(diagnostics, jump) {
  const items = [];
  diagnostics.forEach((d, id) => {
    if (isSummary(d)) return;
    const li = document.createElement('li');
    const el = document.createElement(d.line != null ? 'button' : 'div');
    el.className = 'd-' + levelOf(d);
    const lvl = document.createElement('span');
    lvl.className = 'd-level';
    lvl.textContent = d.code && /^E\d{4}$/.test(d.code) ? `${d.level}[${d.code}]` : d.level;
    const msg = document.createElement('span');
    msg.className = 'd-message';
    msg.textContent = d.message;
    el.append(lvl, msg);
    if (d.line != null) {
      el.type = 'button';
      const loc = document.createElement('span');
      loc.className = 'd-loc';
      const file = d.file && d.file !== 'src/main.rs' ? `${d.file} ` : '';
      loc.textContent = `${file}line ${d.line}${d.column != null ? ':' + d.column : ''}`;
      el.append(loc);
      el.title = 'Jump to this line in the editor';
      el.addEventListener('click', () => jump(id, d));
    }
    li.append(el);
    items.push(li);
  });
  return items;
}

/**
 * Diagnostics placed in the page's files. The server names each one's file (`file`, relative to
 * the package: `src/shapes/mod.rs`); a program of one file (`sources` holds only it) is the
 * editor's src/main.rs whatever the server called its crate root (`src/lib.rs` for a Build).
 */
export function placeIn(diagnostics, sources) {
  if (sources.size > 1) return diagnostics;
  return diagnostics.map((d) => (d.file ? { ...d, file: MAIN } : d));
}

/** Seconds a 503's Retry-After header asks to wait (0 without one). */
function retryAfterSeconds(response) {
  const value = response.headers.get('retry-after');
  if (!value) return 0;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? 0 : Math.max(0, (date - Date.now()) / 1000);
}

/**
 * An error answer explained: `{badge, kind, detail, notice, retry, wait}`. `what` names the
 * request in sentences ("this program", "Clippy"); `data` is the parsed JSON, when it was JSON.
 */
export function describeHttpError(response, data, text, what = null) {
  const status = response.status;
  const message = data && typeof data.error === 'string' ? data.error : null;
  if (status === 503 || status === 429) {
    const wait = retryAfterSeconds(response);
    return {
      badge: 'Server busy',
      kind: 'limit',
      detail: wait > 0 ? `The server is busy; it asks to try again in ${Math.ceil(wait)} s.` : 'The server is busy; try again in a moment.',
      notice: 'The server is running as many programs as it can right now, so it did not take this one. Your program is unchanged.' +
        (message ? ` (Server: ${message})` : ''),
      retry: true,
      wait,
    };
  }
  let badge;
  let detail;
  if (status === 413) {
    badge = 'Too large';
    detail = 'The program or its input is over the size limit.';
  } else if (status === 404) {
    badge = 'Not found';
    detail = what ? `This server does not offer ${what}.` : 'This server has no playground API at this address.';
  } else if (status >= 400 && status < 500) {
    badge = 'Request rejected';
    detail = 'The server could not accept this request.';
  } else {
    badge = 'Server error';
    detail = `The server failed (HTTP ${status}).`;
  }
  const shown = message ?? (text.trim() ? `The answer was not the playground's JSON: ${text.trim().slice(0, 300)}` : 'The answer was empty.');
  return { badge, kind: 'error', detail, notice: `HTTP ${status}: ${shown}`, retry: status >= 500, wait: 0 };
}

/**
 * POSTs `body` to a tool's endpoint: `{response, data, text}` for any answer (data is null unless
 * it was JSON), or throws when no answer came.
 */
export async function callTool(tool, body) {
  const response = await fetch(tool.path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify(tool.target ? { ...body, target: tool.target } : body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch {
    data = null;
  }
  return { response, data, text };
}

// -----------------------------------------------------------------------------------------------
// Output tabs

/**
 * The output pane's tabs: the run's output is the first; each tool gets one the first time it is
 * used, and keeps its last result. Arrow keys move between tabs, as the ARIA tabs pattern asks.
 */
export class Tabs {
  constructor(tablist, container) {
    this.tablist = tablist;
    this.container = container;
    tablist.addEventListener('keydown', (e) => {
      const tabs = [...tablist.querySelectorAll('[role=tab]')];
      const at = tabs.indexOf(document.activeElement);
      if (at < 0) return;
      const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      const tab = tabs[(to + tabs.length) % tabs.length];
      this.select(tab.dataset.tab);
      tab.focus();
    });
    for (const tab of tablist.querySelectorAll('[role=tab]')) {
      tab.addEventListener('click', () => this.select(tab.dataset.tab));
    }
    this.select(tablist.querySelector('[role=tab]').dataset.tab);
  }

  /** The panel of tab `id`, made (with its tab, titled `title`) when there is none yet. */
  panel(id, title) {
    let panel = document.getElementById(`panel-${id}`);
    if (panel) return panel;
    const tab = document.createElement('button');
    tab.type = 'button';
    tab.id = `tab-${id}`;
    tab.dataset.tab = id;
    tab.className = 'tab';
    tab.setAttribute('role', 'tab');
    tab.setAttribute('aria-controls', `panel-${id}`);
    tab.textContent = title;
    tab.addEventListener('click', () => this.select(id));
    this.tablist.append(tab);
    panel = toolPanel(id);
    panel.setAttribute('aria-labelledby', tab.id);
    this.container.append(panel);
    return panel;
  }

  select(id) {
    for (const tab of this.tablist.querySelectorAll('[role=tab]')) {
      const on = tab.dataset.tab === id;
      tab.setAttribute('aria-selected', String(on));
      tab.tabIndex = on ? 0 : -1;
      document.getElementById(tab.getAttribute('aria-controls')).hidden = !on;
    }
  }
}

/** A tool's panel: a summary line, then an explanation, the result and the tool's messages. */
function toolPanel(id) {
  const panel = document.createElement('div');
  panel.id = `panel-${id}`;
  panel.className = 'tab-panel tool-panel';
  panel.setAttribute('role', 'tabpanel');
  panel.hidden = true;
  panel.innerHTML = `
    <div class="summary" role="status" aria-live="polite">
      <span class="badge idle"></span><span class="detail"></span><span class="meta"></span>
    </div>
    <div class="output" aria-live="polite">
      <div class="notice" hidden><p class="notice-text"></p></div>
      <p class="explain" hidden></p>
      <section class="out out-code" hidden><h2></h2><pre class="tool-code" tabindex="0"></pre></section>
      <section class="out out-stdout" hidden><h2>Standard output</h2><pre class="tool-stdout" tabindex="0"></pre></section>
      <section class="out out-messages" hidden>
        <h2>Messages</h2>
        <ul class="diagnostics"></ul>
        <pre class="tool-stderr" tabindex="0"></pre>
      </section>
    </div>`;
  return panel;
}

/** Fills a tool's panel. `view`: `{badge, kind, detail, meta?, notice?, explain?, code?, codeTitle?, stdout?, stderr?, items?}`. */
export function showInPanel(panel, view) {
  const q = (selector) => panel.querySelector(selector);
  const badge = q('.badge');
  badge.textContent = view.badge;
  badge.className = `badge ${view.kind}`;
  q('.detail').textContent = view.detail ?? '';
  q('.meta').textContent = view.meta ?? '';
  q('.notice').hidden = !view.notice;
  q('.notice-text').textContent = view.notice ?? '';
  q('.explain').hidden = !view.explain;
  q('.explain').textContent = view.explain ?? '';
  q('.explain').className = `explain ${view.kind}`;
  q('.out-code').hidden = view.code == null;
  q('.out-code h2').textContent = view.codeTitle ?? '';
  q('.tool-code').textContent = view.code ?? '';
  q('.out-stdout').hidden = view.stdout == null;
  q('.tool-stdout').textContent = view.stdout ?? '';
  const items = view.items ?? [];
  q('.diagnostics').replaceChildren(...items);
  q('.diagnostics').hidden = items.length === 0;
  q('.tool-stderr').textContent = view.stderr ?? '';
  q('.tool-stderr').hidden = !view.stderr;
  q('.out-messages').hidden = !view.stderr && items.length === 0;
}

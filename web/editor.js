// A small code editor for Rust: a transparent <textarea> (which keeps the browser's own caret,
// selection, undo, IME and accessibility) laid over a <pre> that shows the same text highlighted,
// with a gutter of line numbers and diagnostic markers. No dependencies, no build step.
//
// The textarea never scrolls by itself: it is sized to its content, and the surrounding
// `.editor-scroll` element scrolls the gutter, the highlighted text and the textarea together,
// so they can never drift apart.

const INDENT = '    ';
const OPEN_TO_CLOSE = { '(': ')', '[': ']', '{': '}' };
const CLOSERS = new Set([')', ']', '}']);

// ---------------------------------------------------------------------------------------------
// Rust tokenizer

const KEYWORDS = new Set(
  ('as async await break const continue dyn else enum extern fn for if impl in let loop match mod ' +
    'move mut pub ref return static struct trait type unsafe use where while yield union macro_rules')
    .split(' '),
);
const SELF_WORDS = new Set(['self', 'Self', 'crate', 'super']);
const LITERAL_WORDS = new Set(['true', 'false']);
const PRIMITIVES = new Set(
  'i8 i16 i32 i64 i128 isize u8 u16 u32 u64 u128 usize f32 f64 bool char str'.split(' '),
);
const DECLARES_TYPE = new Set(['struct', 'enum', 'trait', 'type', 'union', 'impl']);

const RE_SPACE = /\s+/y;
const RE_IDENT = /(?:r#)?[\p{XID_Start}_][\p{XID_Continue}]*/uy;
const RE_NUMBER =
  /(?:0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*(?:\.(?![.\p{XID_Start}_])[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)(?:[iu](?:8|16|32|64|128|size)|f32|f64)?/uy;
const RE_CHAR = /b?'(?:[^'\\\n]|\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]{1,8}\}|.))'/uy;
const RE_LIFETIME = /'[\p{XID_Start}_][\p{XID_Continue}]*/uy;
const RE_RAW_STRING_START = /(?:b|c)?r(#*)"/y;
const RE_STRING_PART = /\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]{1,8}\}|\n\s*|.)|\{\{|\}\}|\{[^{}"]*\}/g;

/**
 * Splits Rust source into highlighted tokens `[start, end, class]`; text between tokens is plain.
 * Robust to unfinished code: an unterminated string or comment runs to the end.
 */
export function tokenize(src) {
  const tokens = [];
  const n = src.length;
  let i = 0;
  let prevWord = ''; // the previous identifier-like token, to spot `fn name` and `struct Name`
  const push = (start, end, cls) => tokens.push([start, end, cls]);
  const match = (re) => {
    re.lastIndex = i;
    const m = re.exec(src);
    return m ? m[0] : null;
  };

  while (i < n) {
    const c = src[i];
    const next = src[i + 1];

    let m = match(RE_SPACE);
    if (m) {
      i += m.length;
      continue;
    }

    // Comments, nested block comments, doc comments.
    if (c === '/' && next === '/') {
      let end = src.indexOf('\n', i);
      if (end < 0) end = n;
      const isDoc = (src[i + 2] === '/' && src[i + 3] !== '/') || src[i + 2] === '!';
      push(i, end, isDoc ? 'doc' : 'com');
      i = end;
      continue;
    }
    if (c === '/' && next === '*') {
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        if (src[j] === '/' && src[j + 1] === '*') {
          depth++;
          j += 2;
        } else if (src[j] === '*' && src[j + 1] === '/') {
          depth--;
          j += 2;
        } else j++;
      }
      const isDoc = (src[i + 2] === '*' && src[i + 3] !== '*' && src[i + 3] !== '/') || src[i + 2] === '!';
      push(i, j, isDoc ? 'doc' : 'com');
      i = j;
      continue;
    }

    // Raw strings r"..", r#".."#, br"..", cr"..".
    m = match(RE_RAW_STRING_START);
    if (m) {
      const hashes = m.length - m.indexOf('r') - 2;
      const close = '"' + '#'.repeat(hashes);
      let end = src.indexOf(close, i + m.length);
      end = end < 0 ? n : end + close.length;
      push(i, end, 'str');
      i = end;
      prevWord = '';
      continue;
    }

    // Strings "..", b"..", c"..", with escapes and, right after a macro such as `println!(`,
    // format arguments `{name:>5}` picked out.
    if (c === '"' || ((c === 'b' || c === 'c') && next === '"')) {
      let j = c === '"' ? i + 1 : i + 2;
      while (j < n && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
      const end = Math.min(j + 1, n);
      const last = tokens[tokens.length - 1];
      const isFormat = last && last[2] === 'mac' && /^\s*\(\s*$/.test(src.slice(last[1], i));
      RE_STRING_PART.lastIndex = 0;
      const body = src.slice(i, end);
      let from = 0;
      for (let p; (p = RE_STRING_PART.exec(body)); ) {
        const isEscape = p[0][0] === '\\';
        if (!isEscape && (!isFormat || p[0] === '{{' || p[0] === '}}')) continue;
        if (p.index > from) push(i + from, i + p.index, 'str');
        push(i + p.index, i + p.index + p[0].length, isEscape ? 'esc' : 'fmt');
        from = p.index + p[0].length;
      }
      if (from < body.length) push(i + from, end, 'str');
      i = end;
      prevWord = '';
      continue;
    }

    // Character literals and lifetimes.
    if (c === "'" || (c === 'b' && next === "'")) {
      m = match(RE_CHAR);
      if (m) {
        push(i, i + m.length, 'chr');
        i += m.length;
        continue;
      }
      if (c === "'") {
        m = match(RE_LIFETIME);
        if (m) {
          push(i, i + m.length, 'life');
          i += m.length;
          continue;
        }
      }
    }

    // Attributes #[..] and #![..], up to the matching bracket.
    if (c === '#' && (next === '[' || (next === '!' && src[i + 2] === '['))) {
      let j = src.indexOf('[', i) + 1;
      let depth = 1;
      while (j < n && depth > 0) {
        const d = src[j];
        if (d === '[') depth++;
        else if (d === ']') depth--;
        else if (d === '"') {
          j++;
          while (j < n && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
        } else if (d === '\n' && depth > 0 && src[j + 1] === '\n') break;
        j++;
      }
      push(i, j, 'attr');
      i = j;
      continue;
    }

    if (c >= '0' && c <= '9') {
      m = match(RE_NUMBER);
      push(i, i + m.length, 'num');
      i += m.length;
      prevWord = '';
      continue;
    }

    m = match(RE_IDENT);
    if (m) {
      const word = m.startsWith('r#') ? m.slice(2) : m;
      const end = i + m.length;
      let cls = null;
      let tokenEnd = end;
      // What follows the word, skipping blanks: `!` makes a macro, `(` a call.
      let k = end;
      while (k < n && (src[k] === ' ' || src[k] === '\t')) k++;
      const after = src[k];
      if (m.startsWith('r#')) cls = null;
      else if (KEYWORDS.has(word)) cls = 'kw';
      else if (SELF_WORDS.has(word)) cls = 'self';
      else if (LITERAL_WORDS.has(word)) cls = 'lit';
      else if (PRIMITIVES.has(word)) cls = 'ty';
      if (cls === null) {
        if (after === '!' && src[k + 1] !== '=' && prevWord !== 'macro_rules') {
          cls = 'mac';
          tokenEnd = k + 1;
        } else if (prevWord === 'fn') cls = 'fnd';
        else if (DECLARES_TYPE.has(prevWord)) cls = 'ty';
        else if (prevWord === 'macro_rules') cls = 'mac';
        else if (/^[A-Z][A-Z0-9_]+$/.test(word)) cls = 'const';
        else if (/^[A-Z]/.test(word)) cls = 'ty';
        else if (after === '(' || (after === ':' && src[k + 1] === ':' && src[k + 2] === '<')) cls = 'fn';
      }
      if (cls) push(i, tokenEnd, cls);
      prevWord = word;
      i = tokenEnd;
      continue;
    }

    // Everything else is punctuation; a few operators get a class of their own.
    if (c === '?' || (c === '=' && next === '>') || (c === '-' && next === '>')) {
      const len = c === '?' ? 1 : 2;
      push(i, i + len, 'op');
      i += len;
      continue;
    }
    if (c !== ':' && c !== '<' && c !== '&' && c !== '!') prevWord = '';
    i += 1;
  }
  return tokens;
}

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' };
export function escapeHtml(s) {
  return s.replace(/[&<>"]/g, (c) => ESCAPES[c]);
}

/**
 * The highlighted HTML of each line of `src` (without the newline): tokens, plus `marks`
 * (`{start, end, level}`, offsets into `src`) shown as underlines, plus `lenses` (offset of a line's
 * end -> `{level, text}`) shown after the line's text.
 */
export function renderLines(src, marks = [], lenses = new Map()) {
  const tokens = tokenize(src);
  const lines = [];
  let line = '';

  // Offsets where the set of active marks changes, in order.
  const cuts = [...new Set(marks.flatMap((m) => [m.start, m.end]))]
    .filter((x) => x > 0 && x < src.length)
    .sort((a, b) => a - b);
  let cutIdx = 0;

  // A piece of one line, with one token class, split where marks begin and end.
  const piece = (start, end, cls) => {
    while (start < end) {
      let stop = end;
      if (cuts.length) {
        while (cutIdx < cuts.length && cuts[cutIdx] <= start) cutIdx++;
        if (cutIdx < cuts.length && cuts[cutIdx] < end) stop = cuts[cutIdx];
      }
      let classes = cls ? 'tok-' + cls : '';
      if (marks.length) {
        let level = null;
        for (const m of marks) {
          if (m.start <= start && stop <= m.end && m.start < m.end && (level === null || m.level === 'error')) level = m.level;
        }
        if (level) classes += (classes ? ' ' : '') + 'mark mark-' + level;
      }
      const text = escapeHtml(src.slice(start, stop));
      line += classes ? `<span class="${classes}">${text}</span>` : text;
      start = stop;
    }
  };
  const endLine = (at) => {
    const lens = lenses.get(at);
    if (lens) line += `<span class="lens lens-${lens.level}">${escapeHtml(lens.text)}</span>`;
    lines.push(line);
    line = '';
  };
  // A run of text that may span lines.
  const run = (start, end, cls) => {
    while (start < end) {
      const nl = src.indexOf('\n', start);
      if (nl < 0 || nl >= end) {
        piece(start, end, cls);
        return;
      }
      piece(start, nl, cls);
      endLine(nl);
      start = nl + 1;
    }
  };

  let pos = 0;
  for (const [s, e, cls] of tokens) {
    if (s > pos) run(pos, s, null);
    run(s, e, cls);
    pos = e;
  }
  if (pos < src.length) run(pos, src.length, null);
  endLine(src.length);
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Positions

/** Offsets where each line starts. */
function lineStarts(src) {
  const starts = [0];
  for (let i = src.indexOf('\n'); i >= 0; i = src.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

/** Line (1-based) of an offset, by binary search over `starts`. */
function lineOf(starts, offset) {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

/** The offset of 1-based `line` and `column`, columns counted in Unicode scalar values as rustc does. */
function offsetOf(src, starts, line, column) {
  const l = Math.min(Math.max(line, 1), starts.length);
  const lineStart = starts[l - 1];
  const lineEnd = l < starts.length ? starts[l] - 1 : src.length;
  let offset = lineStart;
  for (let col = 1; col < column && offset < lineEnd; col++) {
    const code = src.codePointAt(offset);
    offset += code > 0xffff ? 2 : 1;
  }
  return Math.min(offset, lineEnd);
}

// ---------------------------------------------------------------------------------------------
// The editor

export class Editor {
  /**
   * @param {HTMLElement} root the `.editor` element holding `.editor-scroll`, `.gutter`,
   *   `.highlight code`, `.current-line` and the `textarea`.
   * @param {{onChange?: (value: string) => void}} options
   */
  constructor(root, { onChange } = {}) {
    this.root = root;
    this.scroller = root.querySelector('.editor-scroll');
    this.gutter = root.querySelector('.gutter');
    this.code = root.querySelector('.highlight code');
    this.currentLine = root.querySelector('.current-line');
    this.textarea = root.querySelector('textarea');
    this.onChange = onChange || (() => {});
    this.marks = []; // {start, end, level, message, id}
    this.lastValue = this.textarea.value;
    this.renderedLines = [];
    this.markedLines = [];
    this.tabLeavesEditor = false;
    this.currentLineNumber = 0;

    this.textarea.addEventListener('input', () => this.handleInput());
    this.textarea.addEventListener('keydown', (e) => this.handleKeydown(e));
    this.textarea.addEventListener('blur', () => (this.tabLeavesEditor = false));
    // The textarea is as big as its content, so it should never scroll; undo any attempt.
    this.textarea.addEventListener('scroll', () => {
      this.textarea.scrollTop = 0;
      this.textarea.scrollLeft = 0;
    });
    document.addEventListener('selectionchange', () => {
      if (document.activeElement !== this.textarea) return;
      this.updateCurrentLine();
      // The browser reveals the caret but not the padding above the first line.
      if (this.currentLineNumber === 1 && this.scroller.scrollTop < 3 * this.metrics().lineHeight) {
        this.scroller.scrollTop = 0;
      }
    });
    this.textarea.addEventListener('focus', () => this.updateCurrentLine());
    this.render();
  }

  get value() {
    return this.textarea.value;
  }

  /** Replaces the whole text. `undoable` keeps the old text one Ctrl+Z away. */
  setValue(text, { undoable = false } = {}) {
    if (undoable) {
      this.replaceRange(0, this.textarea.value.length, text, 0, 0);
    } else {
      this.textarea.value = text;
      this.textarea.setSelectionRange(0, 0);
      this.handleInput();
    }
    this.scroller.scrollTop = 0;
    this.scroller.scrollLeft = 0;
  }

  focus() {
    this.textarea.focus({ preventScroll: true });
  }

  /**
   * Shows compiler diagnostics: underlines, gutter markers and end-of-line messages. Each is
   * `{level, message, line, column, endLine, endColumn}` as the API sends them; ones without a
   * line are ignored. Markers follow the text as it is edited until the next call. `source` is
   * the text the diagnostics are about, when it may differ from the editor's by now.
   */
  setDiagnostics(diagnostics, source = this.textarea.value) {
    const src = source;
    const starts = lineStarts(src);
    this.marks = [];
    diagnostics.forEach((d, id) => {
      if (d.line == null) return;
      let start = offsetOf(src, starts, d.line, d.column ?? 1);
      let end =
        d.endLine != null ? offsetOf(src, starts, d.endLine, d.endColumn ?? 1) : start;
      if (end < start) end = start;
      if (end === start) {
        // An empty span (e.g. "expected `;`" at a line's end): underline one character near it.
        const lineEnd = src.indexOf('\n', start) < 0 ? src.length : src.indexOf('\n', start);
        if (start < lineEnd) end = start + 1;
        else if (start > starts[lineOf(starts, start) - 1]) start -= 1;
      }
      const level = d.level === 'error' ? 'error' : d.level === 'warning' ? 'warning' : 'note';
      this.marks.push({ id, start, end, level, message: d.message, code: d.code });
    });
    // Edited while the program was compiling: carry the marks over to the text as it is now.
    this.shiftMarks(source, this.textarea.value);
    this.render();
  }

  /** The current line of diagnostic `id` (its index in the last `setDiagnostics` list). */
  diagnosticLine(id) {
    const mark = this.marks.find((m) => m.id === id);
    if (!mark) return null;
    return lineOf(lineStarts(this.textarea.value), mark.start);
  }

  /** Puts the caret on diagnostic `id`'s start (following edits), or at `line`/`column`. */
  goToDiagnostic(id, line, column) {
    const mark = this.marks.find((m) => m.id === id);
    if (mark) this.goToOffset(mark.start);
    else this.goTo(line, column);
  }

  /** Puts the caret at 1-based `line` and `column`, scrolls it into view and focuses the editor. */
  goTo(line, column = 1) {
    const src = this.textarea.value;
    this.goToOffset(offsetOf(src, lineStarts(src), line, column));
  }

  goToOffset(offset) {
    this.root.scrollIntoView({ block: 'nearest' });
    this.focus();
    this.textarea.setSelectionRange(offset, offset);
    this.updateCurrentLine();
    this.scrollToCaret();
    this.currentLine.classList.remove('flash');
    void this.currentLine.offsetWidth; // restart the animation
    this.currentLine.classList.add('flash');
  }

  /** Scrolls `.editor-scroll` so the caret's line and column are visible. */
  scrollToCaret() {
    const src = this.textarea.value;
    const caret = this.textarea.selectionStart;
    const starts = lineStarts(src);
    const line = lineOf(starts, caret);
    const metrics = this.metrics();
    const top = metrics.padTop + (line - 1) * metrics.lineHeight;
    const s = this.scroller;
    if (top < s.scrollTop || top + metrics.lineHeight > s.scrollTop + s.clientHeight) {
      s.scrollTop = Math.max(0, top - s.clientHeight / 3);
    }
    const column = caret - starts[line - 1];
    const x = this.gutter.offsetWidth + metrics.padLeft + column * metrics.charWidth;
    if (x < s.scrollLeft + this.gutter.offsetWidth || x > s.scrollLeft + s.clientWidth - 20) {
      s.scrollLeft = Math.max(0, x - s.clientWidth / 2);
    }
  }

  metrics() {
    const style = getComputedStyle(this.textarea);
    if (!this.charWidth) {
      const probe = document.createElement('span');
      probe.textContent = 'x'.repeat(100);
      probe.style.cssText = 'position:absolute;visibility:hidden;white-space:pre';
      probe.style.font = style.font;
      document.body.appendChild(probe);
      this.charWidth = probe.getBoundingClientRect().width / 100;
      probe.remove();
    }
    return {
      lineHeight: parseFloat(style.lineHeight),
      padTop: parseFloat(style.paddingTop),
      padLeft: parseFloat(style.paddingLeft),
      charWidth: this.charWidth,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Rendering

  handleInput() {
    const value = this.textarea.value;
    this.shiftMarks(this.lastValue, value);
    this.lastValue = value;
    this.render();
    this.updateCurrentLine();
    this.onChange(value);
  }

  /** Moves diagnostic marks along with an edit, found as the differing middle of old and new. */
  shiftMarks(before, after) {
    if (!this.marks.length || before === after) return;
    const max = Math.min(before.length, after.length);
    let prefix = 0;
    while (prefix < max && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++;
    let suffix = 0;
    while (
      suffix < max - prefix &&
      before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)
    )
      suffix++;
    const oldEnd = before.length - suffix;
    const newEnd = after.length - suffix;
    const delta = after.length - before.length;
    const move = (x) => (x >= oldEnd ? x + delta : x <= prefix ? x : Math.min(x, newEnd));
    for (const m of this.marks) {
      m.start = move(m.start);
      m.end = Math.max(m.start, move(m.end));
    }
    // A mark whose text was deleted keeps a one-character underline where it was.
    this.marks = this.marks.filter((m) => m.start <= after.length);
  }

  render() {
    const src = this.textarea.value;
    const starts = lineStarts(src);
    const lenses = new Map();
    const lineMarks = new Map(); // line -> marks on it
    for (const m of this.marks) {
      const line = lineOf(starts, m.start);
      if (!lineMarks.has(line)) lineMarks.set(line, []);
      lineMarks.get(line).push(m);
    }
    const rank = { error: 0, warning: 1, note: 2 };
    for (const [line, list] of lineMarks) {
      list.sort((a, b) => rank[a.level] - rank[b.level]);
      const lineEnd = line < starts.length ? starts[line] - 1 : src.length;
      const more = list.length > 1 ? `  (+${list.length - 1} more)` : '';
      lenses.set(lineEnd, { level: list[0].level, text: list[0].message + more });
    }
    this.renderCode(renderLines(src, this.marks, lenses));
    this.renderGutter(starts.length, lineMarks);
  }

  /**
   * Puts one block per line in the highlight layer, touching only the lines that changed since
   * the last call: the browser then lays out only those, which keeps typing fast in long programs.
   */
  renderCode(lines) {
    const old = this.renderedLines || [];
    const max = Math.min(old.length, lines.length);
    let prefix = 0;
    while (prefix < max && old[prefix] === lines[prefix]) prefix++;
    let suffix = 0;
    while (suffix < max - prefix && old[old.length - 1 - suffix] === lines[lines.length - 1 - suffix]) suffix++;
    const code = this.code;
    const removeEnd = old.length - suffix;
    for (let i = removeEnd - 1; i >= prefix; i--) code.children[i].remove();
    const added = lines.slice(prefix, lines.length - suffix);
    if (added.length) {
      const html = added.map((l) => `<span class="l">${l}</span>`).join('');
      const before = code.children[prefix] || null;
      if (before) before.insertAdjacentHTML('beforebegin', html);
      else code.insertAdjacentHTML('beforeend', html);
    }
    this.renderedLines = lines;
  }

  /** Line numbers, and a marker (with the messages as a tooltip) on lines with diagnostics. */
  renderGutter(lines, lineMarks) {
    const gutter = this.gutter;
    if (gutter.children.length !== lines) {
      while (gutter.children.length > lines) gutter.lastElementChild.remove();
      if (gutter.children.length < lines) {
        let html = '';
        for (let n = gutter.children.length + 1; n <= lines; n++) html += `<div class="ln">${n}</div>`;
        gutter.insertAdjacentHTML('beforeend', html);
      }
      gutter.style.setProperty('--digits', String(Math.max(2, String(lines).length)));
    }
    for (const line of this.markedLines || []) {
      const div = gutter.children[line - 1];
      if (div && !lineMarks.has(line)) {
        div.className = 'ln' + (line === this.currentLineNumber ? ' current' : '');
        div.removeAttribute('title');
      }
    }
    for (const [line, marks] of lineMarks) {
      const div = gutter.children[line - 1];
      if (!div) continue;
      div.className = `ln marker marker-${marks[0].level}` + (line === this.currentLineNumber ? ' current' : '');
      div.title = marks.map((m) => `${m.level}: ${m.message}`).join('\n');
    }
    this.markedLines = [...lineMarks.keys()];
  }

  updateCurrentLine() {
    const src = this.textarea.value;
    const caret = this.textarea.selectionStart;
    let line = 1;
    for (let i = src.indexOf('\n'); i >= 0 && i < caret; i = src.indexOf('\n', i + 1)) line++;
    const { lineHeight, padTop } = this.metrics();
    this.currentLine.style.transform = `translateY(${padTop + (line - 1) * lineHeight}px)`;
    this.currentLine.style.height = `${lineHeight}px`;
    if (line !== this.currentLineNumber) {
      this.gutter.children[this.currentLineNumber - 1]?.classList.remove('current');
      this.gutter.children[line - 1]?.classList.add('current');
      this.currentLineNumber = line;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Editing

  /**
   * Replaces `[from, to)` with `text` through the browser's editing commands, so Ctrl+Z undoes
   * it, then selects `[selStart, selEnd]`.
   */
  replaceRange(from, to, text, selStart, selEnd = selStart) {
    const ta = this.textarea;
    ta.focus({ preventScroll: true });
    ta.setSelectionRange(from, to);
    let done = false;
    try {
      done =
        text === ''
          ? from === to || document.execCommand('delete', false)
          : document.execCommand('insertText', false, text);
    } catch {
      done = false;
    }
    if (!done || ta.value.slice(from, from + text.length) !== text) {
      ta.setRangeText(text, from, to, 'end');
      ta.dispatchEvent(new Event('input', { bubbles: true }));
    }
    ta.setSelectionRange(selStart, selEnd);
    this.updateCurrentLine();
  }

  handleKeydown(e) {
    const ta = this.textarea;
    const { selectionStart: start, selectionEnd: end, value } = ta;
    const mod = e.ctrlKey || e.metaKey;

    if (e.key === 'Escape') {
      // Escape, then Tab, moves the focus out of the editor instead of indenting.
      this.tabLeavesEditor = true;
      return;
    }
    if (e.key === 'Tab' && this.tabLeavesEditor) {
      this.tabLeavesEditor = false;
      return;
    }
    if (e.key !== 'Shift') this.tabLeavesEditor = false;
    if (e.isComposing || e.altKey) return;

    if (e.key === 'Tab' && !mod) {
      e.preventDefault();
      const multiline = value.slice(start, end).includes('\n');
      if (e.shiftKey || multiline) this.indentLines(e.shiftKey ? -1 : 1);
      else {
        const col = start - (value.lastIndexOf('\n', start - 1) + 1);
        const spaces = ' '.repeat(INDENT.length - (col % INDENT.length));
        this.replaceRange(start, end, spaces, start + spaces.length);
      }
      return;
    }
    if (e.key === '/' && mod) {
      e.preventDefault();
      this.toggleComment();
      return;
    }
    if (mod) return;

    if (e.key === 'Enter') {
      e.preventDefault();
      const lineStart = value.lastIndexOf('\n', start - 1) + 1;
      const indent = /^[ \t]*/.exec(value.slice(lineStart, start))[0];
      const before = value[start - 1];
      const after = value[end];
      if (before in OPEN_TO_CLOSE) {
        const inner = '\n' + indent + INDENT;
        if (after === OPEN_TO_CLOSE[before]) {
          // Between a pair: open an indented line and put the closer on its own line.
          this.replaceRange(start, end, inner + '\n' + indent, start + inner.length);
        } else this.replaceRange(start, end, inner, start + inner.length);
      } else {
        // Keep the indentation; drop trailing blanks of the line being split.
        let cut = start;
        while (cut > lineStart && (value[cut - 1] === ' ' || value[cut - 1] === '\t') && cut > lineStart + indent.length) cut--;
        const insert = '\n' + indent;
        this.replaceRange(cut, end, insert, cut + insert.length);
      }
      return;
    }

    if (e.key === 'Backspace' && start === end && start > 0) {
      const prev = value[start - 1];
      if (OPEN_TO_CLOSE[prev] === value[start] || (prev === '"' && value[start] === '"')) {
        e.preventDefault();
        this.replaceRange(start - 1, start + 1, '', start - 1);
        return;
      }
      const lineStart = value.lastIndexOf('\n', start - 1) + 1;
      const before = value.slice(lineStart, start);
      if (before.length > 0 && /^ +$/.test(before)) {
        // Soft tabs: delete back to the previous indentation stop.
        e.preventDefault();
        const remove = ((before.length - 1) % INDENT.length) + 1;
        this.replaceRange(start - remove, start, '', start - remove);
      }
      return;
    }

    if (e.key.length !== 1) return;
    const key = e.key;
    const next = value[end];

    if (key in OPEN_TO_CLOSE) {
      const close = OPEN_TO_CLOSE[key];
      if (start !== end) {
        e.preventDefault();
        const inner = value.slice(start, end);
        this.replaceRange(start, end, key + inner + close, start + 1, end + 1);
      } else if (next === undefined || /[\s)\]};,.]/.test(next)) {
        e.preventDefault();
        this.replaceRange(start, end, key + close, start + 1);
      }
      return;
    }
    if (CLOSERS.has(key)) {
      if (start === end && next === key) {
        e.preventDefault();
        ta.setSelectionRange(start + 1, start + 1);
        return;
      }
      // A lone `}` on a blank line dedents to match its block.
      if (key === '}' && start === end) {
        const lineStart = value.lastIndexOf('\n', start - 1) + 1;
        const before = value.slice(lineStart, start);
        if (before.length >= INDENT.length && /^ +$/.test(before)) {
          e.preventDefault();
          const keep = before.length - (before.length % INDENT.length || INDENT.length);
          this.replaceRange(lineStart, start, ' '.repeat(keep) + '}', lineStart + keep + 1);
        }
      }
      return;
    }
    if (key === '"') {
      if (start !== end) {
        e.preventDefault();
        this.replaceRange(start, end, '"' + value.slice(start, end) + '"', start + 1, end + 1);
        return;
      }
      if (next === '"' && value[start - 1] !== '\\') {
        e.preventDefault();
        ta.setSelectionRange(start + 1, start + 1);
        return;
      }
      const lineStart = value.lastIndexOf('\n', start - 1) + 1;
      const quotesBefore = (value.slice(lineStart, start).replace(/\\./g, '').match(/"/g) || []).length;
      const prev = value[start - 1];
      const insideString = quotesBefore % 2 === 1;
      if (!insideString && (next === undefined || /[\s)\]};,]/.test(next)) && !/[\p{L}\p{N}_]/u.test(prev || '')) {
        e.preventDefault();
        this.replaceRange(start, end, '""', start + 1);
      }
    }
  }

  /** The full lines covered by the selection: `[from, to)` offsets. */
  selectedLines() {
    const { selectionStart: start, value } = this.textarea;
    let end = this.textarea.selectionEnd;
    // A selection ending at the start of a line does not include that line.
    if (end > start && value[end - 1] === '\n') end--;
    const from = value.lastIndexOf('\n', start - 1) + 1;
    let to = value.indexOf('\n', end);
    if (to < 0) to = value.length;
    return [from, to];
  }

  indentLines(direction) {
    const { selectionStart: start, selectionEnd: end, value } = this.textarea;
    const [from, to] = this.selectedLines();
    const lines = value.slice(from, to).split('\n');
    let firstDelta = 0;
    let total = 0;
    const changed = lines.map((line, i) => {
      let delta;
      let result;
      if (direction > 0) {
        result = line.length ? INDENT + line : line;
        delta = result.length - line.length;
      } else {
        const spaces = /^ */.exec(line)[0].length;
        const remove = line.startsWith('\t') ? 1 : Math.min(spaces, INDENT.length);
        result = line.slice(remove);
        delta = -remove;
      }
      if (i === 0) firstDelta = delta;
      total += delta;
      return result;
    });
    const text = changed.join('\n');
    if (text === value.slice(from, to)) return;
    const newStart = Math.max(from, start + firstDelta);
    const newEnd = start === end ? newStart : Math.max(newStart, end + total);
    this.replaceRange(from, to, text, newStart, newEnd);
  }

  toggleComment() {
    const { selectionStart: start, selectionEnd: end, value } = this.textarea;
    const [from, to] = this.selectedLines();
    const lines = value.slice(from, to).split('\n');
    const nonBlank = lines.filter((l) => l.trim());
    const uncomment = nonBlank.length > 0 && nonBlank.every((l) => /^\s*\/\//.test(l));
    const minIndent = Math.min(...nonBlank.map((l) => /^\s*/.exec(l)[0].length), Infinity);
    let firstDelta = 0;
    let total = 0;
    const changed = lines.map((line, i) => {
      let result = line;
      if (uncomment) result = line.replace(/^(\s*)\/\/ ?/, '$1');
      else if (line.trim()) result = line.slice(0, minIndent) + '// ' + line.slice(minIndent);
      if (i === 0) firstDelta = result.length - line.length;
      total += result.length - line.length;
      return result;
    });
    const newStart = Math.max(from, start + firstDelta);
    const newEnd = start === end ? newStart : end + total;
    this.replaceRange(from, to, changed.join('\n'), newStart, newEnd);
  }
}

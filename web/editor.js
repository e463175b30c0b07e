// The page's code editor: CodeMirror 6 (bundled in ./codemirror.js by scripts/build-editor) set
// up for Rust as the playground wants it. Rust parsing and highlighting, bracket matching,
// folding, search and replace, multiple cursors, undo history and screen-reader support come from
// CodeMirror; this module adds the playground's keys (Ctrl+Enter runs, Tab indents by four
// columns), the compiler's diagnostics (underlines, the lint gutter, a message at the line's
// end), and one document per file of a multi-file program, each with its own undo history.

import {
  EditorState,
  EditorSelection,
  StateEffect,
  StateField,
  Prec,
  EditorView,
  Decoration,
  WidgetType,
  keymap,
  lineNumbers,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  drawSelection,
  dropCursor,
  rectangularSelection,
  crosshairCursor,
  defaultKeymap,
  history,
  historyKeymap,
  indentMore,
  indentLess,
  syntaxHighlighting,
  HighlightStyle,
  bracketMatching,
  foldGutter,
  foldKeymap,
  indentOnInput,
  indentUnit,
  search,
  searchKeymap,
  highlightSelectionMatches,
  setDiagnostics,
  lintGutter,
  lintKeymap,
  forEachDiagnostic,
  closeBrackets,
  closeBracketsKeymap,
  rust,
  tags as t,
} from './codemirror.js';

const INDENT = '    ';

// Token colours come from style.css (`.tok-*`, with light and dark values), so the editor follows
// the page's theme without a second set of colours here.
const highlightStyle = HighlightStyle.define([
  { tag: [t.keyword, t.definitionKeyword, t.moduleKeyword, t.controlKeyword, t.operatorKeyword, t.modifier], class: 'tok-kw' },
  { tag: t.self, class: 'tok-self' },
  { tag: [t.typeName, t.namespace], class: 'tok-ty' },
  { tag: t.function(t.definition(t.variableName)), class: 'tok-fnd' },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], class: 'tok-fn' },
  { tag: t.macroName, class: 'tok-mac' },
  { tag: [t.string, t.special(t.string)], class: 'tok-str' },
  { tag: t.character, class: 'tok-chr' },
  { tag: [t.integer, t.float, t.bool], class: 'tok-num' },
  { tag: [t.lineComment, t.blockComment], class: 'tok-com' },
  { tag: t.meta, class: 'tok-attr' },
  { tag: t.special(t.variableName), class: 'tok-life' },
]);

// The editor's frame, also in the page's CSS variables (see `.cm-*` rules in style.css).
const theme = EditorView.theme({
  '&': { height: '100%', color: 'var(--fg)', backgroundColor: 'var(--panel)' },
  '.cm-scroller': { fontFamily: 'var(--mono)', fontSize: 'var(--fs)', lineHeight: 'var(--lh)' },
  '.cm-content': { padding: 'var(--pad-y) 0', caretColor: 'var(--fg)' },
  '.cm-gutters': { backgroundColor: 'var(--panel-2)', color: 'var(--gutter-fg)', borderRight: '1px solid var(--border)' },
  '.cm-activeLine': { backgroundColor: 'var(--line-bg)' },
  '.cm-activeLineGutter': { backgroundColor: 'transparent', color: 'var(--fg)' },
  '&.cm-focused': { outline: 'none' },
  '&.cm-focused > .cm-scroller > .cm-selectionLayer .cm-selectionBackground, .cm-selectionBackground':
    { backgroundColor: 'var(--selection)' },
  '.cm-cursor': { borderLeftColor: 'var(--fg)' },
});

// -----------------------------------------------------------------------------------------------
// Keys

/**
 * Tab: with a selection over several lines, indents them; otherwise inserts spaces up to the next
 * multiple of four columns, as the hand-written editor did (CodeMirror's own Tab indents the line).
 */
function softTab(view) {
  const { state } = view;
  if (state.selection.ranges.some((r) => state.doc.lineAt(r.from).number !== state.doc.lineAt(r.to).number)) {
    return indentMore(view);
  }
  const change = state.changeByRange((range) => {
    const column = range.from - state.doc.lineAt(range.from).from;
    const spaces = ' '.repeat(INDENT.length - (column % INDENT.length));
    return {
      changes: { from: range.from, to: range.to, insert: spaces },
      range: EditorSelection.cursor(range.from + spaces.length),
    };
  });
  view.dispatch(state.update(change, { scrollIntoView: true, userEvent: 'input.indent' }));
  return true;
}

// -----------------------------------------------------------------------------------------------
// Diagnostics: positions, and the message shown at the end of a marked line

/** The offset of 1-based `line` and `column` in `doc`, columns in Unicode scalar values as rustc counts them. */
function offsetOf(doc, line, column) {
  const l = doc.line(Math.min(Math.max(line, 1), doc.lines));
  let offset = l.from;
  for (let col = 1; col < column && offset < l.to; col++) {
    offset += doc.sliceString(offset, offset + 2).codePointAt(0) > 0xffff ? 2 : 1;
  }
  return Math.min(offset, l.to);
}

/**
 * Where an offset of `before` is in `after`, for diagnostics that arrive after the text changed:
 * the edit is taken as the differing middle of the two texts.
 */
function offsetMapper(before, after) {
  if (before === after) return (x) => x;
  const max = Math.min(before.length, after.length);
  let prefix = 0;
  while (prefix < max && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++;
  let suffix = 0;
  while (suffix < max - prefix && before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)) suffix++;
  const oldEnd = before.length - suffix;
  const newEnd = after.length - suffix;
  return (x) => (x >= oldEnd ? x + after.length - before.length : x <= prefix ? x : Math.min(x, newEnd));
}

class LensWidget extends WidgetType {
  constructor(level, text) {
    super();
    this.level = level;
    this.text = text;
  }
  eq(other) {
    return other.level === this.level && other.text === this.text;
  }
  toDOM() {
    const span = document.createElement('span');
    span.className = `lens lens-${this.level}`;
    span.textContent = this.text;
    span.setAttribute('aria-hidden', 'true');
    return span;
  }
  ignoreEvent() {
    return false;
  }
}

const setLenses = StateEffect.define();
/** The first message of each marked line, shown after the line's text; follows edits. */
const lensField = StateField.define({
  create: () => Decoration.none,
  update(lenses, tr) {
    lenses = lenses.map(tr.changes);
    for (const e of tr.effects) if (e.is(setLenses)) lenses = e.value;
    return lenses;
  },
  provide: (f) => EditorView.decorations.from(f),
});

const RANK = { error: 0, warning: 1, info: 2 };

function lensesFor(doc, marks) {
  const byLine = new Map();
  for (const m of marks) {
    const line = doc.lineAt(m.from).number;
    if (!byLine.has(line)) byLine.set(line, []);
    byLine.get(line).push(m);
  }
  const ranges = [];
  for (const [line, list] of [...byLine].sort((a, b) => a[0] - b[0])) {
    list.sort((a, b) => RANK[a.severity] - RANK[b.severity]);
    const more = list.length > 1 ? `  (+${list.length - 1} more)` : '';
    const level = list[0].severity === 'info' ? 'note' : list[0].severity;
    const widget = Decoration.widget({ widget: new LensWidget(level, list[0].message + more), side: 1 });
    ranges.push(widget.range(doc.line(line).to));
  }
  return Decoration.set(ranges);
}

/**
 * The transaction that marks `diagnostics` (entries for other files are null, kept so that each
 * mark's `id` is its index in the server's list) in `state`, whose text was `source` when they
 * were made.
 */
function diagnosticSpec(state, diagnostics, source = state.doc.toString()) {
  const text = state.doc.toString();
  const sourceDoc = source === text ? state.doc : EditorState.create({ doc: source }).doc;
  const map = offsetMapper(source, text);
  const length = state.doc.length;
  const marks = [];
  diagnostics.forEach((d, id) => {
    if (d?.line == null) return;
    let from = offsetOf(sourceDoc, d.line, d.column ?? 1);
    // Without an end (placed from the rendered output), the word at the start is marked.
    let to = d.endLine != null
      ? offsetOf(sourceDoc, d.endLine, d.endColumn ?? 1)
      : from + (/^\w+/u.exec(sourceDoc.sliceString(from, sourceDoc.lineAt(from).to))?.[0].length ?? 1);
    from = Math.min(map(from), length);
    to = Math.max(from, Math.min(map(to), length));
    const severity = d.level === 'error' ? 'error' : d.level === 'warning' ? 'warning' : 'info';
    marks.push({ from, to, severity, message: d.message, source: d.code ?? undefined, id });
  });
  const spec = setDiagnostics(state, marks);
  return { ...spec, effects: [...[spec.effects ?? []].flat(), setLenses.of(lensesFor(state.doc, marks))] };
}

// -----------------------------------------------------------------------------------------------
// The editor

export class Editor {
  /**
   * @param {HTMLElement} parent where the editor goes
   * @param {{onChange?: () => void, onRun?: () => void, label?: string, describedBy?: string}} options
   */
  constructor(parent, { onChange = () => {}, onRun = () => {}, label = 'Rust source code', describedBy } = {}) {
    this.onChange = onChange;
    this.onRun = onRun;
    this.label = label;
    this.describedBy = describedBy;
    /** name → EditorState of every file but the one shown (whose state is the view's). */
    this.states = new Map();
    this.current = 'src/main.rs';
    this.order = [this.current];
    this.view = new EditorView({ parent, state: this.newState('') });
  }

  /** A fresh document with everything the editor does; its own undo history. */
  newState(text) {
    const attributes = { id: 'code', 'aria-label': this.label, 'aria-multiline': 'true' };
    if (this.describedBy) attributes['aria-describedby'] = this.describedBy;
    return EditorState.create({
      doc: text,
      extensions: [
        lineNumbers(),
        foldGutter(),
        lintGutter(),
        highlightActiveLineGutter(),
        highlightSpecialChars(),
        history(),
        drawSelection(),
        dropCursor(),
        EditorState.allowMultipleSelections.of(true),
        indentOnInput(),
        indentUnit.of(INDENT),
        EditorState.tabSize.of(4),
        rust(),
        // Lifetimes (`'a`) make a closing `'` more often wrong than right: pairs of brackets and
        // double quotes only.
        Prec.highest(EditorState.languageData.of(() => [
          { closeBrackets: { brackets: ['(', '[', '{', '"'], stringPrefixes: ['b', 'r', 'br', 'c', 'cr'] } },
        ])),
        syntaxHighlighting(highlightStyle),
        bracketMatching(),
        closeBrackets(),
        rectangularSelection(),
        crosshairCursor(),
        highlightActiveLine(),
        highlightSelectionMatches(),
        search({ top: true }),
        lensField,
        theme,
        EditorView.contentAttributes.of(attributes),
        Prec.highest(keymap.of([
          { key: 'Mod-Enter', run: () => (this.onRun(), true) },
          { key: 'Tab', run: softTab, shift: indentLess },
        ])),
        keymap.of([
          ...closeBracketsKeymap,
          ...defaultKeymap,
          ...searchKeymap,
          ...historyKeymap,
          ...foldKeymap,
          ...lintKeymap,
        ]),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) this.onChange();
        }),
      ],
    });
  }

  /** The name of the file shown. */
  get file() {
    return this.current;
  }

  /** Every file's text, `{name, content}` in the order given to `setFiles`. */
  files() {
    return this.order.map((name) => ({
      name,
      content: (name === this.current ? this.view.state : this.states.get(name)).doc.toString(),
    }));
  }

  /** Replaces every file (fresh undo histories) and shows `show`, or the first file. */
  setFiles(files, show = files[0]?.name) {
    this.order = files.map((f) => f.name);
    this.states = new Map(files.map((f) => [f.name, this.newState(f.content)]));
    this.current = null;
    this.showFile(this.states.has(show) ? show : this.order[0]);
  }

  /** Shows file `name`; its selection, scroll position and undo history are as it was left. */
  showFile(name) {
    if (!this.states.has(name) && name !== this.current) return;
    if (this.current !== null && this.current !== name) this.states.set(this.current, this.view.state);
    if (name !== this.current) {
      this.view.setState(this.states.get(name));
      this.states.delete(name);
      this.current = name;
    }
  }

  /** Adds an empty file after the others. */
  addFile(name, content = '') {
    this.order.push(name);
    this.states.set(name, this.newState(content));
  }

  /** Renames file `from` to `to` (its history is kept). */
  renameFile(from, to) {
    this.order = this.order.map((n) => (n === from ? to : n));
    if (this.current === from) this.current = to;
    else {
      this.states.set(to, this.states.get(from));
      this.states.delete(from);
    }
  }

  /** Removes file `name`; when it is shown, shows the first file. */
  removeFile(name) {
    this.order = this.order.filter((n) => n !== name);
    if (this.current === name) {
      this.current = null;
      this.showFile(this.order[0]);
    } else this.states.delete(name);
  }

  /** Replaces the shown file's text. `undoable` keeps the old text one Ctrl+Z away (one step). */
  setValue(text, { undoable = false, userEvent = 'input.replace' } = {}) {
    if (!undoable) {
      this.view.setState(this.newState(text));
      return;
    }
    this.view.dispatch({
      changes: { from: 0, to: this.view.state.doc.length, insert: text },
      selection: EditorSelection.cursor(Math.min(this.view.state.selection.main.head, text.length)),
      userEvent,
      scrollIntoView: true,
    });
  }

  /**
   * Replaces file `name`'s text with `text` as one undo step, changing only the part that differs
   * so that the caret stays where it was (Rustfmt's answer).
   */
  replaceFile(name, text) {
    const shown = name === this.current;
    const state = shown ? this.view.state : this.states.get(name);
    if (!state) return;
    const old = state.doc.toString();
    if (old === text) return;
    let from = 0;
    while (from < old.length && from < text.length && old[from] === text[from]) from++;
    let end = 0;
    while (end < old.length - from && end < text.length - from && old[old.length - 1 - end] === text[text.length - 1 - end]) end++;
    const spec = { changes: { from, to: old.length - end, insert: text.slice(from, text.length - end) }, userEvent: 'input.format' };
    if (shown) this.view.dispatch(spec);
    else this.states.set(name, state.update(spec).state);
  }

  focus() {
    this.view.focus();
  }

  /**
   * Marks diagnostics: underlines, the lint gutter, a message at the line's end. Each is
   * `{level, message, line, column, endLine, endColumn, file?}` as the API sends them (no `file`:
   * src/main.rs); ones without a line are left out. `sources` (file name → text) is the text they
   * are about, when the editor's may have changed since: marks then follow the edit.
   */
  setDiagnostics(diagnostics, sources = new Map()) {
    for (const name of this.order) {
      const mine = diagnostics.map((d) => ((d.file ?? 'src/main.rs') === name ? d : null));
      const shown = name === this.current;
      const state = shown ? this.view.state : this.states.get(name);
      const spec = diagnosticSpec(state, mine, sources.get(name));
      if (shown) this.view.dispatch(spec);
      else this.states.set(name, state.update(spec).state);
    }
  }

  /** The file that diagnostic `id` of the last `setDiagnostics` list is in, or null. */
  fileOfDiagnostic(id) {
    for (const name of this.order) {
      const state = name === this.current ? this.view.state : this.states.get(name);
      let found = false;
      forEachDiagnostic(state, (d) => (found ||= d.id === id));
      if (found) return name;
    }
    return null;
  }

  /** Puts the caret on diagnostic `id`'s start (following edits), or at `line`/`column`. */
  goToDiagnostic(id, line, column) {
    let found = null;
    forEachDiagnostic(this.view.state, (d, from) => {
      if (d.id === id) found = from;
    });
    if (found === null) this.goTo(line, column);
    else this.goToOffset(found);
  }

  /** Puts the caret at 1-based `line` and `column`, scrolls it into view and focuses the editor. */
  goTo(line, column = 1) {
    this.goToOffset(offsetOf(this.view.state.doc, line, column));
  }

  goToOffset(offset) {
    this.view.dom.scrollIntoView({ block: 'nearest' });
    this.view.dispatch({
      selection: EditorSelection.cursor(offset),
      effects: EditorView.scrollIntoView(offset, { y: 'center' }),
    });
    this.focus();
  }
}

// The parts of CodeMirror 6 the page uses, re-exported from one module so that
// scripts/build-editor can bundle them into web/codemirror.js (served by the binary, no Node at
// build or run time). web/editor.js imports from that bundle.

export { EditorState, EditorSelection, StateEffect, StateField, Prec } from '@codemirror/state';
export {
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
} from '@codemirror/view';
export { defaultKeymap, history, historyKeymap, indentMore, indentLess } from '@codemirror/commands';
export {
  syntaxHighlighting,
  HighlightStyle,
  bracketMatching,
  foldGutter,
  foldKeymap,
  indentOnInput,
  indentUnit,
} from '@codemirror/language';
export { search, searchKeymap, highlightSelectionMatches } from '@codemirror/search';
export { setDiagnostics, lintGutter, lintKeymap, forEachDiagnostic } from '@codemirror/lint';
export { closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete';
export { rust } from '@codemirror/lang-rust';
export { tags } from '@lezer/highlight';

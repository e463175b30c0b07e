// The file list beside the editor, for programs of several files: src/main.rs plus modules
// (src/a.rs, src/a/b.rs), sent to the server as the list form of `code`. The editor keeps each
// file's text and undo history; this module draws the list and asks for names.

/** A module's path as the server takes it: under src/, Rust identifiers, ending in `.rs`. */
const MODULE_PATH = /^src\/(?:[a-z_][a-z0-9_]*\/)*[a-z_][a-z0-9_]*\.rs$/;
export const MAIN = 'src/main.rs';

/** Why `name` cannot be a new file's name, or null when it can. */
function invalidName(name, taken) {
  if (!MODULE_PATH.test(name)) return 'A module is a path such as src/parser.rs or src/parser/lexer.rs: lower-case letters, digits and _, ending in .rs.';
  if (taken.includes(name)) return `There is already a file ${name}.`;
  return null;
}

export class FileList {
  /**
   * @param {HTMLElement} root the `.files` element holding `#file-list`, `#file-add` and the
   *   `#file-form` (a name field, used for adding and renaming)
   * @param {import('./editor.js').Editor} editor
   * @param {{onChange: () => void}} options called when files are added, renamed, removed or shown
   */
  constructor(root, editor, { onChange }) {
    this.editor = editor;
    this.onChange = onChange;
    this.list = root.querySelector('#file-list');
    this.form = root.querySelector('#file-form');
    this.input = root.querySelector('#file-name');
    this.error = root.querySelector('#file-error');
    this.renaming = null; // the file being renamed, or null when the form adds one
    root.querySelector('#file-add').addEventListener('click', () => this.ask(null));
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    this.form.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') this.closeForm();
    });
    root.querySelector('#file-cancel').addEventListener('click', () => this.closeForm());
  }

  /** Draws the list: one button per file, with rename and remove buttons for modules. */
  render() {
    const items = this.editor.files().map(({ name }) => {
      const li = document.createElement('li');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'file';
      open.textContent = name;
      open.dataset.file = name;
      if (name === this.editor.file) open.setAttribute('aria-current', 'true');
      open.addEventListener('click', () => this.show(name));
      li.append(open);
      if (name !== MAIN) {
        li.append(
          this.smallButton('✎', `Rename ${name}`, 'file-rename', () => this.ask(name)),
          this.smallButton('×', `Remove ${name}`, 'file-remove', () => this.remove(name)),
        );
      }
      return li;
    });
    this.list.replaceChildren(...items);
  }

  smallButton(label, title, className, action) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `btn icon small ${className}`;
    button.textContent = label;
    button.title = title;
    button.setAttribute('aria-label', title);
    button.addEventListener('click', action);
    return button;
  }

  /** Shows file `name` in the editor. */
  show(name) {
    this.editor.showFile(name);
    this.render();
    this.onChange();
  }

  /** Opens the name form, to add a module (`from` null) or rename `from`. */
  ask(from) {
    this.renaming = from;
    this.form.hidden = false;
    this.error.textContent = '';
    this.input.value = from ?? 'src/';
    this.input.setAttribute('aria-label', from ? `New name for ${from}` : 'Name of the new module');
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  closeForm() {
    this.form.hidden = true;
    this.editor.focus();
  }

  submit() {
    const name = this.input.value.trim();
    const taken = this.editor.files().map((f) => f.name).filter((n) => n !== this.renaming);
    const problem = name === this.renaming ? null : invalidName(name, taken);
    if (problem) {
      this.error.textContent = problem;
      return;
    }
    if (this.renaming) {
      this.editor.renameFile(this.renaming, name);
    } else {
      const module = name.slice('src/'.length, -'.rs'.length).split('/').pop();
      this.editor.addFile(name, `// The module \`${module}\`: its parent declares it with \`mod ${module};\`.\n`);
      this.editor.showFile(name);
    }
    this.form.hidden = true;
    this.render();
    this.editor.focus();
    this.onChange();
  }

  remove(name) {
    if (!window.confirm(`Remove ${name}? Its text cannot be brought back.`)) return;
    this.editor.removeFile(name);
    this.render();
    this.editor.focus();
    this.onChange();
  }
}

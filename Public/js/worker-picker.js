// The merged console's selection of workers: a chip per selected name (a worker id or a prefix pattern
// such as `strategy-*`), in the worker's colour, with a button to remove it, and "+ Worker" opening a
// list of the gateway's workers (filterable; arrows, Enter or Space to add or remove, Escape to close)
// where a typed pattern ending in `*` can be added too.

import { workerColorIndex } from './merge.js';
import { consoleURL, isSelection, selects } from './urls.js';

export class WorkerPicker {
  /** The selected names, in the order they were added. */
  names;
  #root;
  #chips;
  #button;
  #panel;
  #filter;
  #list;
  #workers = [];
  #status = new Map();
  #onChange;

  /** `root`: the element to fill; `names`: the selection; `onChange(names, {added, removed})`. */
  constructor(root, names, { onChange } = {}) {
    this.#root = root;
    this.names = [...names];
    this.#onChange = onChange;
    this.#chips = document.createElement('span');
    this.#chips.className = 'picked';
    this.#chips.setAttribute('role', 'list');
    this.#chips.setAttribute('aria-label', 'Workers in this console');
    this.#button = document.createElement('button');
    this.#button.type = 'button';
    this.#button.id = 'add-worker';
    this.#button.className = 'add-worker';
    this.#button.textContent = '+ Worker';
    this.#button.title = 'Add or remove workers (a prefix pattern such as strategy-* follows every worker it matches)';
    this.#button.setAttribute('aria-haspopup', 'listbox');
    this.#button.setAttribute('aria-expanded', 'false');
    this.#button.setAttribute('aria-controls', 'picker-panel');
    this.#panel = document.createElement('div');
    this.#panel.className = 'picker-panel';
    this.#panel.id = 'picker-panel';
    this.#panel.hidden = true;
    this.#filter = document.createElement('input');
    this.#filter.type = 'search';
    this.#filter.id = 'picker-filter';
    this.#filter.placeholder = 'Filter, or a pattern: strategy-*';
    this.#filter.autocomplete = 'off';
    this.#filter.spellcheck = false;
    this.#filter.setAttribute('aria-label', 'Filter the workers, or type a prefix pattern ending in * and press Enter');
    this.#list = document.createElement('div');
    this.#list.className = 'picker-list';
    this.#list.id = 'picker-list';
    this.#list.setAttribute('role', 'listbox');
    this.#list.setAttribute('aria-multiselectable', 'true');
    this.#list.setAttribute('aria-label', 'Workers of the gateway');
    this.#panel.append(this.#filter, this.#list);
    root.append(this.#chips, this.#button, this.#panel);

    this.#button.addEventListener('click', () => this.toggle());
    this.#filter.addEventListener('input', () => this.#renderList());
    this.#filter.addEventListener('keydown', (event) => {
      if (event.key === 'ArrowDown') {
        event.preventDefault();
        this.#list.querySelector('.pick')?.focus();
      } else if (event.key === 'Enter') {
        event.preventDefault();
        const text = this.#filter.value.trim();
        if (text.endsWith('*') && isSelection(text)) this.add(text);
        else this.#list.querySelector('.pick')?.click();
      } else if (event.key === 'Escape') {
        this.close();
        this.#button.focus();
      }
    });
    this.#list.addEventListener('click', (event) => {
      const item = event.target.closest('.pick');
      if (!item) return;
      if (this.names.includes(item.dataset.name)) this.remove(item.dataset.name);
      else this.add(item.dataset.name);
      this.#list.querySelector(`.pick[data-name="${CSS.escape(item.dataset.name)}"]`)?.focus();
    });
    this.#list.addEventListener('keydown', (event) => {
      const items = [...this.#list.querySelectorAll('.pick')];
      const index = items.indexOf(document.activeElement);
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        const next = index + (event.key === 'ArrowDown' ? 1 : -1);
        if (next < 0) this.#filter.focus();
        else items[Math.min(items.length - 1, next)]?.focus();
      } else if (event.key === 'Escape') {
        this.close();
        this.#button.focus();
      }
    });
    this.#chips.addEventListener('click', (event) => {
      const remove = event.target.closest('.unpick');
      if (remove) this.remove(remove.dataset.name);
    });
    document.addEventListener('click', (event) => {
      if (!this.#panel.hidden && !root.contains(event.target)) this.close();
    });
    this.#renderChips();
  }

  get isOpen() {
    return !this.#panel.hidden;
  }

  toggle() {
    if (this.#panel.hidden) this.open();
    else this.close();
  }

  open() {
    this.#panel.hidden = false;
    this.#button.setAttribute('aria-expanded', 'true');
    this.#renderList();
    this.#filter.focus();
  }

  close() {
    this.#panel.hidden = true;
    this.#button.setAttribute('aria-expanded', 'false');
  }

  /** The gateway's workers (`/api/workers`), for the list. */
  setWorkers(workers) {
    this.#workers = workers;
    if (!this.#panel.hidden) this.#renderList();
  }

  /** What a chip says about its name's stream (`live`, `ended`, an error…): a tooltip and a style. */
  setStatus(name, state, text) {
    const previous = this.#status.get(name);
    if (previous && previous.state === state && previous.text === text) return;
    this.#status.set(name, { state, text });
    const chip = this.#chips.querySelector(`.chip-worker[data-name="${CSS.escape(name)}"]`);
    if (chip) this.#showStatus(chip, name);
  }

  add(name) {
    if (!isSelection(name) || this.names.includes(name)) return;
    this.names.push(name);
    this.#changed({ added: [name], removed: [] });
  }

  remove(name) {
    if (!this.names.includes(name)) return;
    this.names = this.names.filter((n) => n !== name);
    this.#status.delete(name);
    this.#changed({ added: [], removed: [name] });
  }

  #changed(change) {
    this.#renderChips();
    if (!this.#panel.hidden) this.#renderList();
    this.#onChange?.(this.names, change);
  }

  #showStatus(chip, name) {
    const status = this.#status.get(name);
    chip.dataset.state = status?.state ?? '';
    chip.title = `${name}${name.endsWith('*') ? ' (every worker whose id starts with it)' : ''}${status?.text ? ` — ${status.text}` : ''}`;
  }

  #renderChips() {
    const chips = this.names.map((name) => {
      const chip = document.createElement('span');
      chip.className = `chip-worker wc-${workerColorIndex(name)}`;
      chip.dataset.name = name;
      chip.setAttribute('role', 'listitem');
      // An id links to that worker's own console (its runs, the gateway's copy of its log).
      const label = document.createElement(name.endsWith('*') ? 'span' : 'a');
      label.className = 'chip-name';
      label.textContent = name;
      if (!name.endsWith('*')) {
        label.href = consoleURL(name);
        label.title = `Open the console of ${name} alone (its runs, its log as the gateway keeps it)`;
      }
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'unpick';
      remove.dataset.name = name;
      remove.textContent = '×';
      remove.title = `Remove ${name} from this console`;
      remove.setAttribute('aria-label', `Remove ${name}`);
      chip.append(label, remove);
      this.#showStatus(chip, name);
      return chip;
    });
    this.#chips.replaceChildren(...chips);
  }

  #renderList() {
    const needle = this.#filter.value.trim().toLowerCase();
    const pattern = needle.endsWith('*') ? needle.slice(0, -1) : null;
    const items = [];
    for (const name of this.names.filter((n) => n.endsWith('*'))) items.push(this.#item(name, 'pattern'));
    for (const worker of this.#workers) {
      const id = worker.id;
      if (needle && !(pattern !== null ? id.toLowerCase().startsWith(pattern) : id.toLowerCase().includes(needle))) continue;
      items.push(this.#item(id, worker.state, this.names.some((n) => n !== id && n.endsWith('*') && selects(n, id))));
      if (items.length >= 500) break;
    }
    if (items.length === 0) {
      const none = document.createElement('p');
      none.className = 'picker-none';
      none.textContent = pattern !== null ? `Enter adds the pattern ${this.#filter.value.trim()}` : 'No worker matches.';
      items.push(none);
    }
    this.#list.replaceChildren(...items);
  }

  #item(name, state, viaPattern = false) {
    const item = document.createElement('button');
    item.type = 'button';
    item.className = `pick wc-${workerColorIndex(name)}`;
    item.dataset.name = name;
    item.setAttribute('role', 'option');
    const selected = this.names.includes(name);
    item.setAttribute('aria-selected', String(selected));
    const mark = document.createElement('span');
    mark.className = 'pick-mark';
    mark.textContent = selected ? '✓' : viaPattern ? '∗' : '';
    const label = document.createElement('span');
    label.className = 'pick-name';
    label.textContent = name;
    const what = document.createElement('span');
    what.className = 'pick-state';
    what.textContent = state;
    item.append(mark, label, what);
    item.title = selected ? `Remove ${name} from this console` : `Add ${name} to this console${viaPattern ? ' (already shown through a pattern)' : ''}`;
    return item;
  }
}

// DOM helpers: `h(tag, attrs, ...children)` builds elements without innerHTML
// (text is always inserted as text nodes, so user data cannot inject markup),
// plus a keyed list reconciler that updates polled lists in place.

/**
 * Creates an element.
 * attrs: `class`, `testid` (→ data-testid), `style` (string), `on<event>`
 * (listener), `value`/`checked`/`disabled`/`hidden`/`selected` (properties),
 * `data` (object → dataset); anything else is set as an attribute
 * (`true` → empty attribute, `false`/null/undefined → omitted).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

const PROPS = new Set(["value", "checked", "disabled", "hidden", "selected", "indeterminate"]);

function setAttrs(el, attrs) {
  for (const [key, val] of Object.entries(attrs)) {
    if (val === undefined || val === null) continue;
    if (key === "testid") el.setAttribute("data-testid", val);
    else if (key === "class") el.className = Array.isArray(val) ? val.filter(Boolean).join(" ") : val;
    else if (key === "data") Object.assign(el.dataset, val);
    else if (key.startsWith("on") && typeof val === "function") el.addEventListener(key.slice(2), val);
    else if (PROPS.has(key)) el[key] = val;
    else if (val === true) el.setAttribute(key, "");
    else if (val !== false) el.setAttribute(key, String(val));
  }
}

/** Appends children: nodes, strings and numbers (as text), arrays (flattened); skips null/false. */
export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Sets `el.textContent` only when it changed (keeps selection stable). */
export function setText(el, text) {
  const t = text == null ? "" : String(text);
  if (el.textContent !== t) el.textContent = t;
}

/**
 * Keyed reconciliation for lists that are refreshed by polling: rows keep
 * their identity (focus, open menus and test references survive a refresh).
 * `create(item)` returns a row element with an `update(item)` method (or
 * pass `update(row, item)`); rows whose key disappeared are removed.
 */
export function syncList(container, items, { key, create, update, empty }) {
  const existing = new Map();
  for (const child of [...container.children]) {
    if (child.__key !== undefined) existing.set(child.__key, child);
    else child.remove();
  }
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let row = existing.get(k);
    if (row) {
      existing.delete(k);
      if (update) update(row, item);
      else if (row.update) row.update(item);
    } else {
      row = create(item);
      row.__key = k;
    }
    const want = prev ? prev.nextSibling : container.firstChild;
    if (want !== row) container.insertBefore(row, want);
    prev = row;
  }
  for (const row of existing.values()) row.remove();
  if (items.length === 0 && empty) {
    const node = typeof empty === "function" ? empty() : h("p", { class: "empty" }, empty);
    container.appendChild(node);
  }
}

/** A labelled form field: `<label>text <input …></label>`-style wrapper. */
export function field(labelText, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, labelText),
    control,
    hint ? h("small", { class: "hint" }, hint) : null,
  );
}

/** A `<select>` with options `[value, label]` (or plain strings). */
export function select(attrs, options, current) {
  const el = h("select", attrs);
  for (const opt of options) {
    const [value, label] = Array.isArray(opt) ? opt : [opt, opt];
    el.appendChild(h("option", { value, selected: value === current }, label));
  }
  if (current !== undefined) el.value = current;
  return el;
}

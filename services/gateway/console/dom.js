// A small element builder, so views are plain functions of their state.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// A translated text element: its string follows the language switch.
export const tr = (tag, key, attributes = {}, vars = undefined) =>
  h(tag, { ...attributes, "data-i18n": key, "data-i18n-vars": vars && JSON.stringify(vars) });

let counter = 0;
export const uid = (stem) => `${stem}-${++counter}`;

// A labelled control: <label for> + the control, in one field wrapper.
export function field(labelKey, control, hintKey = undefined) {
  control.id = control.id || uid("field");
  const hint = hintKey && tr("small", hintKey, { id: `${control.id}-hint`, class: "hint" });
  if (hint) control.setAttribute("aria-describedby", hint.id);
  return h("div", { class: "field" }, tr("label", labelKey, { for: control.id }), control, hint);
}

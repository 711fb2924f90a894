// How the console shows an API error (its stable code, message and request id) and a run's figures.
import { h, tr } from "./dom.js";
import { translate } from "./i18n.js";

export function errorBox(error, retry = undefined) {
  const box = h(
    "div",
    { class: "error", role: "alert" },
    h("p", {}, tr("strong", "error.title"), " ", h("code", { class: "error-code" }, error.code || "error")),
    h("p", { class: "error-message" }, error.message),
    error.requestId ? h("p", { class: "hint" }, tr("span", "error.request_id"), " ", h("code", {}, error.requestId)) : null,
    retry ? tr("button", "common.retry", { type: "button", class: "retry", onclick: retry }) : null,
  );
  translate(box);
  return box;
}

// One labelled figure: "<label> <value>", the value formatted for the locale.
export function figure(labelKey, value, { digits = 0, unit = undefined, text = false } = {}) {
  const shown = text
    ? h("span", { class: "value" }, String(value))
    : h("span", { class: "value", dataset: { number: String(value), digits: String(digits) } });
  return h(
    "span",
    { class: "figure", dataset: { figure: labelKey.split(".").pop() } },
    tr("span", labelKey, { class: "label" }),
    " ",
    shown,
    unit ? tr("span", unit, { class: "unit" }) : null,
  );
}

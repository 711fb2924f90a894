// Models and pools: every model of the registry as its pool reports it (GET /models: loaded, the pool
// reachable, requests running and queued, the last minutes' generations, latency and speed), and every
// route with its tiers. Refreshed every few seconds while the page is open.
import { api, json } from "./api.js";
import { h, tr } from "./dom.js";
import { errorBox } from "./feedback.js";
import { translate } from "./i18n.js";

const REFRESH_MS = 3000;

const yesNo = (value, yes, no) => tr("span", value ? yes : no, { class: `state ${value ? "ok" : "off"}` });
const number = (value, digits = 0) => h("span", { dataset: { number: String(value), digits: String(digits) } });

function modelRow(model) {
  const load = model.load;
  const cells = load
    ? [
        number(load.running),
        number(load.waiting),
        number(load.generations),
        number(load.failures),
        load.generations - load.failures ? [number(load.mean_ttft_s * 1000), tr("span", "unit.ms")] : "—",
        load.generations - load.failures ? [number(load.mean_latency_s, 2), tr("span", "unit.s")] : "—",
        load.generations - load.failures ? number(load.tokens_per_s, 1) : "—",
      ]
    : Array(7).fill("—");
  return h(
    "tr",
    { dataset: { model: model.name } },
    h("th", { scope: "row" }, model.name),
    h("td", {}, model.pool),
    h("td", {}, h("code", {}, model.backend)),
    h("td", {}, model.capabilities.map((c) => tr("span", `models.capability.${c}`, { class: "badge" }))),
    h("td", { dataset: { cell: "loaded" } }, yesNo(model.loaded, "models.loaded", "models.not_loaded")),
    h("td", { dataset: { cell: "pool" } }, yesNo(model.pool_reachable, "models.reachable", "models.unreachable")),
    ...cells.map((cell, index) => h("td", { class: "num", dataset: { cell: ["running", "waiting", "generations", "failures", "ttft", "latency", "speed"][index] } }, cell)),
  );
}

const COLUMNS = ["name", "pool", "backend", "capabilities", "loaded", "pool_health", "running", "waiting", "generations", "failures", "ttft", "latency", "speed"];

export function renderModels(main) {
  const status = h("div", { id: "models-status" });
  const rows = h("tbody", { id: "models-rows" });
  const routes = h("ul", { id: "routes-list", class: "routes" });
  const refresh = tr("button", "jobs.refresh", { type: "button", id: "models-refresh" });
  const windowNote = tr("p", "models.window", { class: "hint", id: "models-window" }, { minutes: 5 });
  const view = h(
    "div",
    { class: "models-page" },
    tr("h1", "models.title"),
    tr("p", "models.intro", { class: "hint" }),
    status,
    h(
      "section",
      { "aria-labelledby": "models-heading" },
      h("div", { class: "row" }, tr("h2", "models.models", { id: "models-heading" }), refresh),
      windowNote,
      h("div", { class: "table-wrap" }, h("table", { id: "models-table" }, h("thead", {}, h("tr", {}, COLUMNS.map((c) => tr("th", `models.col.${c}`, { scope: "col" })))), rows)),
    ),
    h("section", { "aria-labelledby": "routes-heading" }, tr("h2", "models.routes", { id: "routes-heading" }), routes),
  );
  main.replaceChildren(view);
  translate(main);
  let timer = null;

  async function load() {
    clearTimeout(timer);
    try {
      const answer = await json("GET", api("/models"));
      rows.replaceChildren(...answer.models.map(modelRow));
      const minutes = answer.models.find((m) => m.load)?.load.window_s / 60;
      if (minutes) windowNote.dataset.i18nVars = JSON.stringify({ minutes });
      routes.replaceChildren(
        ...answer.routes.map((route) =>
          h(
            "li",
            { dataset: { route: route.name } },
            h("strong", {}, route.name),
            route.name === answer.default_route ? [" ", tr("span", "models.default_route", { class: "badge" })] : null,
            ": ",
            route.tiers.flatMap((tier, index) => [index ? " → " : "", tier.kind === "canned" ? tr("span", "models.canned", {}, { name: tier.name }) : h("code", {}, tier.name)]),
          ),
        ),
      );
      status.replaceChildren();
      translate(view);
    } catch (error) {
      status.replaceChildren(errorBox(error, load));
      return;
    }
    if (view.isConnected) timer = setTimeout(() => view.isConnected && load(), REFRESH_MS);
  }
  refresh.addEventListener("click", load);
  load();
}

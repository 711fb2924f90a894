// Sessions: the diagnostic flow end to end. Pick a published template version, answer its options,
// run (streamed, with a loading state), read the result screen; regenerate, retry after a failure.
import { ApiError, api, errorOf, events, json, request } from "./api.js";
import { field, h, tr } from "./dom.js";
import { errorBox, figure } from "./feedback.js";
import { t, translate } from "./i18n.js";

// A session just created on the start screen: its view runs it once at once.
let runOnOpen = null;

export function renderSessionStart(main) {
  const template = h("select", { id: "ss-template" });
  const status = h("div", { id: "ss-status" });
  const chooser = h("div", { id: "ss-chooser" });
  const finder = h("form", { id: "ss-find", class: "inline" }, field("sessions.template", template, "sessions.template.hint"));
  const open = h("input", { id: "ss-code", type: "text", spellcheck: "false", minlength: "4" });
  const opener = h(
    "form",
    { id: "ss-open", class: "inline" },
    field("sessions.open_code", open),
    tr("button", "sessions.open", { type: "submit" }),
  );
  opener.addEventListener("submit", (event) => {
    event.preventDefault();
    if (open.value.trim()) location.hash = `#/sessions/${encodeURIComponent(open.value.trim())}`;
  });
  let templates = [];
  const choose = () => {
    const found = templates.find((candidate) => candidate.name === template.value);
    if (!found) return;
    sessionStorage.setItem("llmmesh.lastTemplate", found.name);
    chooser.replaceChildren(versionForm(found, status));
    translate(chooser);
  };
  template.addEventListener("change", choose);
  // The project's templates that have a published version (the ones a session can start from).
  const load = async () => {
    status.replaceChildren();
    chooser.replaceChildren();
    try {
      templates = (await allTemplates()).filter((candidate) => candidate.versions.some((v) => v.status === "PUBLISHED"));
    } catch (error) {
      status.replaceChildren(errorBox(error, load));
      return;
    }
    finder.hidden = !templates.length;
    if (!templates.length) {
      chooser.replaceChildren(emptyState(load, status));
      translate(chooser);
      return;
    }
    const last = sessionStorage.getItem("llmmesh.lastTemplate");
    template.replaceChildren(...templates.map((candidate) => h("option", { value: candidate.name, selected: candidate.name === last }, candidate.name)));
    choose();
  };
  main.replaceChildren(tr("h1", "sessions.title"), tr("p", "sessions.intro", { class: "hint" }), finder, chooser, status, opener);
  translate(main);
  load();
}

// Every template of the project, page by page (a page holds at most 100).
async function allTemplates() {
  const all = [];
  for (let after = ""; ; ) {
    const page = await json("GET", api(`/templates?limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`));
    all.push(...page.data);
    if (!page.has_more) return all;
    after = page.last_id;
  }
}

// No published template yet: one click writes the example questionnaire (in the console's language)
// through the same template API the Admin page uses, so a first run needs no reading.
function emptyState(reload, status) {
  const create = tr("button", "sessions.example.create", { type: "button", id: "ss-example" });
  create.addEventListener("click", async () => {
    create.disabled = true;
    status.replaceChildren();
    try {
      await createExample();
      await reload();
      document.getElementById("ss-template")?.focus();
    } catch (error) {
      create.disabled = false;
      status.replaceChildren(errorBox(error));
    }
  });
  return h("div", { class: "empty" }, tr("p", "sessions.none", { class: "hint" }), create);
}

async function createExample() {
  const name = t("sessions.example.name");
  const path = (rest = "") => api(`/templates/${encodeURIComponent(name)}${rest}`);
  let existing = null;
  try {
    await json("POST", api("/templates"), { name, description: t("sessions.example.description") });
  } catch (error) {
    if (error.status !== 409) throw error;
    existing = await json("GET", path()); // written before (another tab, a failed publish)
  }
  sessionStorage.setItem("llmmesh.lastTemplate", name);
  if (existing?.versions.some((v) => v.status === "PUBLISHED")) return;
  let draft = existing?.versions.find((v) => v.status === "DRAFT");
  if (!draft) {
    draft = await json("POST", path("/versions"), {
      system_prompt: t("sessions.example.system"),
      user_prompt_template: t("sessions.example.prompt"),
      llm_options: { model: await defaultRoute(), max_tokens: 96, temperature: 0.7 },
      options: ["morning", "team", "focus", "change"].map((key) => ({ key, label: t(`sessions.example.option.${key}`) })),
    });
  }
  await json("POST", path(`/versions/${draft.number}/publish`));
}

// The registry's default route; a key that may not list models (no generate scope) gets the name
// registries use for it.
async function defaultRoute() {
  try {
    return (await json("GET", api("/models"))).default_route;
  } catch (error) {
    if (error.status === 403) return "default";
    throw error;
  }
}

function versionForm(template, status) {
  const published = template.versions.filter((v) => v.status === "PUBLISHED").sort((a, b) => b.number - a.number);
  const version = h(
    "select",
    { id: "ss-version" },
    published.map((v) => h("option", { value: String(v.number), "data-i18n": "sessions.version_n", "data-i18n-vars": JSON.stringify({ n: v.number }) })),
  );
  const options = h("fieldset", { id: "ss-options" });
  const showOptions = () => {
    const chosen = published.find((v) => String(v.number) === version.value);
    options.replaceChildren(tr("legend", "sessions.answers"));
    for (const option of chosen.options) {
      const check = h("input", { type: "checkbox", id: `ss-opt-${option.key}`, value: option.key, class: "answer" });
      const value = h("input", { type: "text", id: `ss-val-${option.key}`, class: "answer-value" });
      value.setAttribute("aria-label", t("sessions.answer_value", { label: option.label }));
      options.append(
        h("div", { class: "answer-row" },
          h("div", { class: "check" }, check, h("label", { for: check.id }, option.label)),
          value,
        ),
      );
    }
  };
  version.addEventListener("change", showOptions);
  showOptions();
  const form = h(
    "form",
    { id: "ss-form" },
    field("sessions.version", version),
    options,
    asJobToggle("ss-as-job"),
    tr("button", "sessions.run", { type: "submit", id: "ss-run" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const answers = [...options.querySelectorAll("input.answer:checked")].map((check) => ({
      option: check.value,
      value: options.querySelector(`#ss-val-${CSS.escape(check.value)}`).value,
    }));
    try {
      const session = await json("POST", api("/sessions"), { template: template.name, version: Number(version.value) });
      await json("PUT", api(`/sessions/${session.session_code}/answers`), { answers });
      runOnOpen = session.session_code;
      location.hash = `#/sessions/${session.session_code}`;
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  });
  return form;
}

export async function renderSession(main, code) {
  const heading = tr("h1", "sessions.session_title", {}, { code });
  const details = h("div", { id: "session-details" });
  const screen = h("section", { id: "result", "aria-labelledby": "result-title" });
  main.replaceChildren(heading, details, screen);
  translate(main);
  let session;
  try {
    session = await json("GET", api(`/sessions/${encodeURIComponent(code)}`));
  } catch (error) {
    screen.replaceChildren(errorBox(error, () => renderSession(main, code)));
    return;
  }
  let greedy = false;
  try {
    const version = await json("GET", api(`/templates/${encodeURIComponent(session.template)}/versions/${session.version}`));
    greedy = version.llm_options?.temperature === 0;
  } catch {
    greedy = false; // the note is a courtesy; the run does not need it
  }
  details.replaceChildren(
    h("p", { class: "hint" },
      tr("span", "sessions.of_version", {}, { template: session.template, n: session.version }), " · ",
      tr("span", "sessions.created"), " ", h("time", { datetime: session.created_at, dataset: { date: session.created_at } })),
    h("ul", { class: "answers" }, session.answers.map((a) => h("li", {}, a.label, a.value ? ` — ${a.value}` : ""))),
  );
  translate(details);
  const view = { code, screen, greedy };
  details.after(asJobToggle("ss-as-job-here"));
  if (runOnOpen === code) {
    runOnOpen = null;
    await run(view, false);
  } else if (session.latest_result) {
    showResult(view, session.latest_result);
  } else {
    const start = tr("button", "sessions.run", { type: "button", id: "ss-run-now", onclick: () => run(view, false) });
    screen.replaceChildren(tr("h2", "sessions.no_result", { id: "result-title" }), start);
    translate(screen);
  }
}

// A seed in the range the API takes (0 to 2^32 - 2).
const freshSeed = () => crypto.getRandomValues(new Uint32Array(1))[0] % 0xffffffff;

// Whether runs go through the durable queue (async: true) instead of a stream: one choice for the
// tab, shown on the start form and on the session's screen.
const AS_JOB = "llmmesh.runAsJob";
const asJob = () => sessionStorage.getItem(AS_JOB) === "yes";

function asJobToggle(id) {
  const check = h("input", { type: "checkbox", id, checked: asJob() });
  check.addEventListener("change", () => sessionStorage.setItem(AS_JOB, check.checked ? "yes" : "no"));
  const toggle = h("div", { class: "check" }, check, tr("label", "sessions.as_job", { for: id }));
  translate(toggle);
  return toggle;
}

const JOB_POLL_MS = 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One run: a loading state while the model writes (streamed in, or followed as a job), then the
// result screen (or the error with a Retry: the same run again, or, when only following a job
// failed, following it again).
async function run(view, force, following = null) {
  const { screen } = view;
  const queued = following !== null || asJob();
  const text = h("div", { class: "result-text streaming", id: "result-text" });
  const job = h("p", { id: "result-job", class: "hint" });
  screen.replaceChildren(
    tr("h2", force ? "sessions.regenerating" : "sessions.generating", { id: "result-title" }),
    h("p", { class: "loading", role: "status", id: "result-loading" }, h("span", { class: "spinner", "aria-hidden": "true" }), tr("span", queued ? "sessions.loading_job" : "sessions.loading")),
    job,
    text,
  );
  screen.setAttribute("aria-busy", "true");
  translate(screen);
  let accepted = following;
  try {
    // Where the version samples, a regenerated text comes from a fresh seed (the seed is part of the
    // inputs the result is stored for); at temperature 0 the model would write the same text anyway.
    const body = { force_regenerate: force };
    if (force && !view.greedy) body.seed = freshSeed();
    const path = api(`/sessions/${encodeURIComponent(view.code)}/llm`);
    if (queued) {
      accepted = accepted || (await json("POST", path, { ...body, async: true }));
      const result = await followJob(accepted, job);
      if (result) showResult(view, result, accepted.job_id);
    } else {
      showResult(view, await streamRun(path, body, text));
    }
  } catch (error) {
    const again = accepted && !error.fromJob ? () => run(view, force, accepted) : () => run(view, force);
    screen.replaceChildren(tr("h2", "sessions.failed", { id: "result-title" }), errorBox(error, again));
    translate(screen);
    screen.querySelector("button.retry")?.focus();
  } finally {
    screen.removeAttribute("aria-busy");
  }
}

async function streamRun(path, body, text) {
  const response = await request("POST", path, { ...body, stream: true });
  const requestId = response.headers.get("x-request-id");
  let result = null;
  for await (const { event, data } of events(response)) {
    const payload = JSON.parse(data);
    if (event === "delta") text.textContent += payload.text;
    else if (event === "error") throw errorOf(502, payload, requestId);
    else if (event === "done") result = payload;
  }
  if (!result) throw new ApiError(0, "incomplete_generation", t("error.incomplete"), requestId);
  return result;
}

// The queued run, read at its status URL until it ends: its result, or its error (an ApiError marked
// fromJob); null once the screen is gone (the job goes on; the Jobs page shows it). While it waits
// it can be cancelled.
async function followJob(accepted, line) {
  line.dataset.jobId = accepted.job_id;
  const cancel = tr("button", "sessions.cancel_job", { type: "button", id: "ss-cancel-job" });
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    await json("POST", `${accepted.status_url}/cancel`).catch(() => (cancel.disabled = false));
  });
  for (let status = accepted; line.isConnected; ) {
    line.replaceChildren(jobLine(accepted.job_id, status.status), " ", cancel);
    translate(line);
    if (status.status === "SUCCEEDED") return status.result;
    if (status.status === "FAILED" || status.status === "CANCELLED") {
      const error = status.error || { code: "job_cancelled", message: t("sessions.job_cancelled") };
      throw Object.assign(new ApiError(0, error.code, error.message, accepted.request_id), { fromJob: true });
    }
    await sleep(JOB_POLL_MS);
    if (line.isConnected) status = await json("GET", accepted.status_url);
  }
  return null;
}

function jobLine(jobId, status) {
  return h(
    "span",
    { class: "job-line" },
    tr("span", "sessions.job", {}, { id: jobId.slice(0, 8) }),
    " ",
    tr("span", `status.${status}`, { class: `status status-${status.toLowerCase()}`, dataset: { status } }),
  );
}

function showResult(view, result, jobId = null) {
  const regenerate = tr("button", "sessions.regenerate", { type: "button", id: "ss-regenerate", onclick: () => run(view, true) });
  const shown = [
    tr("h2", "sessions.result", { id: "result-title" }),
    h("div", { class: "result-text", id: "result-text", dataset: { createdAt: result.created_at } }, result.llm_result),
    h("p", { class: "meta" },
      tr("span", result.cached ? "sessions.cached" : "sessions.fresh", { class: `badge ${result.cached ? "cached" : "fresh"}`, id: "result-origin" }),
      figure("meta.model", result.model, { text: true }),
      figure("meta.prompt_tokens", result.usage.prompt_tokens),
      figure("meta.completion_tokens", result.usage.completion_tokens),
      h("span", { class: "figure" }, tr("span", "sessions.generated_at", { class: "label" }), " ",
        h("time", { id: "result-created", datetime: result.created_at, dataset: { date: result.created_at } })),
    ),
    view.greedy ? tr("p", "sessions.greedy_note", { class: "note", id: "greedy-note" }) : null,
    jobId ? h("p", { class: "hint", id: "result-job" }, jobLine(jobId, "SUCCEEDED"), " ", tr("a", "sessions.see_jobs", { href: "#/jobs" })) : null,
    regenerate,
  ];
  view.screen.replaceChildren(...shown.filter(Boolean));
  translate(view.screen);
}

// Jobs and pipelines: the key's project's recent jobs and pipeline runs (GET /jobs, GET /pipelines/runs),
// filtered and paged as the API pages them, refreshed while anything is still queued or running;
// cancel a job or a run, resume a failed or cancelled run from its failed step.
import { api, json } from "./api.js";
import { field, h, tr } from "./dom.js";
import { errorBox } from "./feedback.js";
import { t, translate } from "./i18n.js";

const KINDS = ["generate", "session", "pipeline_step", "webhook"];
const JOB_STATUSES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const RUN_STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const ACTIVE = new Set(["QUEUED", "RUNNING"]);
const PAGE = 20;
// How often the lists are read again while something on them has not ended.
const REFRESH_MS = 1500;

function choice(id, prefix, values) {
  return h(
    "select",
    { id },
    h("option", { value: "", "data-i18n": "jobs.any" }),
    values.map((value) => h("option", { value, "data-i18n": `${prefix}.${value}` })),
  );
}

const query = (params) => {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.append(name, value);
  const text = search.toString();
  return text ? `?${text}` : "";
};

const statusBadge = (status) => tr("span", `status.${status}`, { class: `status status-${status.toLowerCase()}`, dataset: { status } });
const when = (stamp) => (stamp ? h("time", { datetime: stamp, dataset: { date: stamp } }) : "—");

export function renderJobs(main) {
  const kind = choice("jobs-kind", "kind", KINDS);
  const jobStatus = choice("jobs-status", "status", JOB_STATUSES);
  const runStatus = choice("runs-status", "status", RUN_STATUSES);
  const status = h("div", { id: "jobs-status-line" });
  const jobRows = h("tbody", { id: "jobs-rows" });
  const runList = h("ol", { id: "runs-list", class: "runs" });
  const moreJobs = tr("button", "jobs.more", { type: "button", id: "jobs-more", hidden: true });
  const moreRuns = tr("button", "jobs.more", { type: "button", id: "runs-more", hidden: true });
  const refresh = tr("button", "jobs.refresh", { type: "button", id: "jobs-refresh" });
  const view = h(
    "div",
    { class: "jobs-page" },
    tr("h1", "jobs.title"),
    tr("p", "jobs.intro", { class: "hint" }),
    status,
    h(
      "section",
      { "aria-labelledby": "jobs-heading" },
      tr("h2", "jobs.jobs", { id: "jobs-heading" }),
      h("div", { class: "inline" }, field("jobs.kind", kind), field("jobs.status", jobStatus), refresh),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "jobs-table" },
          h("thead", {}, h("tr", {}, ["jobs.col.id", "jobs.col.kind", "jobs.col.status", "jobs.col.attempts", "jobs.col.created", "jobs.col.detail", "jobs.col.actions"].map((key) => tr("th", key, { scope: "col" })))),
          jobRows,
        ),
      ),
      moreJobs,
    ),
    h(
      "section",
      { "aria-labelledby": "runs-heading" },
      tr("h2", "jobs.runs", { id: "runs-heading" }),
      h("div", { class: "inline" }, field("jobs.status", runStatus)),
      runList,
      moreRuns,
    ),
  );
  main.replaceChildren(view);
  translate(main);

  // What is shown: every page read so far, by id, refreshed in place.
  const state = { jobs: [], runs: [], jobsMore: false, runsMore: false, timer: null };

  const jobRow = (job) =>
    h(
      "tr",
      { dataset: { jobId: job.job_id } },
      h("td", {}, h("code", { title: job.job_id }, job.job_id.slice(0, 8))),
      tr("td", `kind.${job.kind}`),
      h("td", {}, statusBadge(job.status)),
      h("td", { dataset: { number: String(job.attempts) } }),
      h("td", {}, when(job.created_at)),
      h("td", { class: "detail" }, job.error ? h("code", { class: "error-code" }, job.error.code) : job.result?.text ?? job.result?.llm_result ?? ""),
      h(
        "td",
        {},
        ACTIVE.has(job.status)
          ? tr("button", "jobs.cancel", {
              type: "button",
              class: "cancel-job",
              "aria-label": t("jobs.cancel_job", { id: job.job_id.slice(0, 8) }),
              onclick: () => act(() => json("POST", api(`/ai/status/${encodeURIComponent(job.job_id)}/cancel`))),
            })
          : null,
      ),
    );

  const runItem = (run) => {
    const done = run.steps.filter((step) => step.status === "SUCCEEDED").length;
    const actions = [];
    if (run.status === "RUNNING") {
      actions.push(tr("button", "jobs.cancel", { type: "button", class: "cancel-run", onclick: () => act(() => json("POST", api(`/pipelines/runs/${encodeURIComponent(run.run_id)}/cancel`))) }));
    } else if (run.status === "FAILED" || run.status === "CANCELLED") {
      actions.push(tr("button", "jobs.resume", { type: "button", class: "resume-run", onclick: () => act(() => json("POST", api(`/pipelines/runs/${encodeURIComponent(run.run_id)}/resume`))) }));
    }
    const progress = h("progress", { max: String(run.steps.length), value: String(done), "aria-label": t("jobs.progress", { done, total: run.steps.length }) });
    return h(
      "li",
      { class: "run", dataset: { runId: run.run_id } },
      h("p", { class: "run-head" }, h("strong", {}, run.pipeline), " ", statusBadge(run.status), run.stalled ? tr("span", "jobs.stalled", { class: "badge stalled" }) : null, " ", h("code", { title: run.run_id }, run.run_id.slice(0, 8)), " ", when(run.created_at)),
      h("p", { class: "run-progress" }, progress, " ", tr("span", "jobs.progress", { class: "progress-text" }, { done, total: run.steps.length })),
      h(
        "ol",
        { class: "steps" },
        run.steps.map((step) =>
          h("li", { class: "step", dataset: { step: step.name } }, h("span", { class: "step-name" }, step.name), " ", statusBadge(step.status), step.error ? [" ", h("code", { class: "error-code" }, step.error.code)] : null),
        ),
      ),
      run.output ? h("div", { class: "result-text run-output" }, run.output) : null,
      h("div", { class: "row" }, actions),
    );
  };

  function show() {
    jobRows.replaceChildren(...(state.jobs.length ? state.jobs.map(jobRow) : [h("tr", {}, tr("td", "jobs.none_jobs", { colspan: "7", class: "hint" }))]));
    runList.replaceChildren(...(state.runs.length ? state.runs.map(runItem) : [tr("li", "jobs.none_runs", { class: "hint" })]));
    moreJobs.hidden = !state.jobsMore;
    moreRuns.hidden = !state.runsMore;
    translate(view);
  }

  // Read the lists again from the top, as many items as are shown (at least a page), and go on
  // refreshing while the page is open and anything shown has not ended.
  async function load() {
    clearTimeout(state.timer);
    try {
      const [jobs, runs] = await Promise.all([
        json("GET", api(`/jobs${query({ kind: kind.value, status: jobStatus.value, limit: Math.max(PAGE, state.jobs.length) })}`)),
        json("GET", api(`/pipelines/runs${query({ status: runStatus.value, limit: Math.max(PAGE, state.runs.length) })}`)),
      ]);
      Object.assign(state, { jobs: jobs.data, jobsMore: jobs.has_more, runs: runs.data, runsMore: runs.has_more });
      status.replaceChildren();
      show();
    } catch (error) {
      status.replaceChildren(errorBox(error, load));
      return;
    }
    const active = state.jobs.some((job) => ACTIVE.has(job.status)) || state.runs.some((run) => run.status === "RUNNING");
    if (active && view.isConnected) state.timer = setTimeout(() => view.isConnected && load(), REFRESH_MS);
  }

  async function act(call) {
    try {
      await call();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
    await load();
  }

  async function more(list, path, params, key, moreKey) {
    try {
      const page = await json("GET", api(`${path}${query({ ...params, limit: PAGE, after: state[list].at(-1)?.[key] })}`));
      state[list] = [...state[list], ...page.data];
      state[moreKey] = page.has_more;
      show();
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  }

  const reset = () => {
    state.jobs = [];
    state.runs = [];
    load();
  };
  kind.addEventListener("change", reset);
  jobStatus.addEventListener("change", reset);
  runStatus.addEventListener("change", reset);
  refresh.addEventListener("click", load);
  moreJobs.addEventListener("click", () => more("jobs", "/jobs", { kind: kind.value, status: jobStatus.value }, "job_id", "jobsMore"));
  moreRuns.addEventListener("click", () => more("runs", "/pipelines/runs", { status: runStatus.value }, "run_id", "runsMore"));
  load();
}

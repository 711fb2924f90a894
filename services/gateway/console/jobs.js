// Jobs and pipelines: the key's project's recent jobs and pipeline runs (GET /jobs, GET /pipelines/runs)
// and its Batch API batches (GET /v1/batches), filtered and paged as the API pages them, refreshed
// while anything is still queued or running; cancel a job, a run or a batch, resume a failed or
// cancelled run from its failed step.
import { api, json } from "./api.js";
import { field, h, tr } from "./dom.js";
import { errorBox } from "./feedback.js";
import { t, translate } from "./i18n.js";

const KINDS = ["generate", "session", "pipeline_step", "webhook"];
const JOB_STATUSES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const RUN_STATUSES = ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const ACTIVE = new Set(["QUEUED", "RUNNING"]);
// A batch that has not ended; and the colour each batch status borrows from the job statuses.
const BATCH_OPEN = new Set(["validating", "in_progress", "finalizing", "cancelling"]);
const BATCH_TONE = { validating: "running", in_progress: "running", finalizing: "running", completed: "succeeded", failed: "failed", expired: "failed", cancelling: "cancelled", cancelled: "cancelled" };
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
const batchBadge = (status) => tr("span", `batch_status.${status}`, { class: `status status-${BATCH_TONE[status]}`, dataset: { status } });
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
  const batchList = h("ol", { id: "batches-list", class: "runs" });
  const moreBatches = tr("button", "jobs.more", { type: "button", id: "batches-more", hidden: true });
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
    h("section", { "aria-labelledby": "batches-heading" }, tr("h2", "jobs.batches", { id: "batches-heading" }), batchList, moreBatches),
  );
  main.replaceChildren(view);
  translate(main);

  // What is shown: every page read so far, by id, refreshed in place.
  const state = { jobs: [], runs: [], batches: [], jobsMore: false, runsMore: false, batchesMore: false, timer: null };

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

  const batchItem = (batch) => {
    const { total, completed, failed } = batch.request_counts;
    const counts = { total, completed, failed };
    const files = [
      ["jobs.output_file", batch.output_file_id],
      ["jobs.error_file", batch.error_file_id],
    ].filter(([, id]) => id);
    return h(
      "li",
      { class: "run batch", dataset: { batchId: batch.id } },
      h("p", { class: "run-head" }, h("strong", {}, batch.endpoint), " ", batchBadge(batch.status), " ", h("code", { title: batch.id }, batch.id.slice(6, 14)), " ", when(new Date(batch.created_at * 1000).toISOString())),
      h("p", { class: "run-progress" }, h("progress", { max: String(total), value: String(completed + failed), "aria-label": t("jobs.batch_progress", counts) }), " ", tr("span", "jobs.batch_progress", { class: "progress-text" }, counts)),
      files.length ? h("p", { class: "batch-files" }, files.flatMap(([label, id]) => [tr("span", label), " ", h("code", {}, id), " "])) : null,
      batch.errors ? h("p", { class: "batch-errors" }, batch.errors.data.slice(0, 3).map((e) => h("code", { class: "error-code" }, `${e.code}${e.line ? ` (${e.line})` : ""}`))) : null,
      BATCH_OPEN.has(batch.status) && batch.status !== "cancelling"
        ? h("div", { class: "row" }, tr("button", "jobs.cancel", { type: "button", class: "cancel-batch", onclick: () => act(() => json("POST", `/v1/batches/${encodeURIComponent(batch.id)}/cancel`)) }))
        : null,
    );
  };

  function show() {
    jobRows.replaceChildren(...(state.jobs.length ? state.jobs.map(jobRow) : [h("tr", {}, tr("td", "jobs.none_jobs", { colspan: "7", class: "hint" }))]));
    runList.replaceChildren(...(state.runs.length ? state.runs.map(runItem) : [tr("li", "jobs.none_runs", { class: "hint" })]));
    batchList.replaceChildren(...(state.batches.length ? state.batches.map(batchItem) : [tr("li", "jobs.none_batches", { class: "hint" })]));
    moreJobs.hidden = !state.jobsMore;
    moreRuns.hidden = !state.runsMore;
    moreBatches.hidden = !state.batchesMore;
    translate(view);
  }

  // Read the lists again from the top, as many items as are shown (at least a page), and go on
  // refreshing while the page is open and anything shown has not ended.
  async function load() {
    clearTimeout(state.timer);
    try {
      const [jobs, runs, batches] = await Promise.all([
        json("GET", api(`/jobs${query({ kind: kind.value, status: jobStatus.value, limit: Math.max(PAGE, state.jobs.length) })}`)),
        json("GET", api(`/pipelines/runs${query({ status: runStatus.value, limit: Math.max(PAGE, state.runs.length) })}`)),
        json("GET", `/v1/batches${query({ limit: Math.min(100, Math.max(PAGE, state.batches.length)) })}`),
      ]);
      Object.assign(state, { jobs: jobs.data, jobsMore: jobs.has_more, runs: runs.data, runsMore: runs.has_more, batches: batches.data, batchesMore: batches.has_more });
      status.replaceChildren();
      show();
    } catch (error) {
      status.replaceChildren(errorBox(error, load));
      return;
    }
    const active = state.jobs.some((job) => ACTIVE.has(job.status)) || state.runs.some((run) => run.status === "RUNNING") || state.batches.some((batch) => BATCH_OPEN.has(batch.status));
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

  async function more(list, url, params, key, moreKey) {
    try {
      const page = await json("GET", `${url}${query({ ...params, limit: PAGE, after: state[list].at(-1)?.[key] })}`);
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
    state.batches = [];
    load();
  };
  kind.addEventListener("change", reset);
  jobStatus.addEventListener("change", reset);
  runStatus.addEventListener("change", reset);
  refresh.addEventListener("click", load);
  moreJobs.addEventListener("click", () => more("jobs", api("/jobs"), { kind: kind.value, status: jobStatus.value }, "job_id", "jobsMore"));
  moreRuns.addEventListener("click", () => more("runs", api("/pipelines/runs"), { status: runStatus.value }, "run_id", "runsMore"));
  moreBatches.addEventListener("click", () => more("batches", "/v1/batches", {}, "id", "batchesMore"));
  load();
}

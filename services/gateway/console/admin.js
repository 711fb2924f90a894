// Admin: API keys through the admin API (/admin/v1, with the admin token, or a key with the admin scope)
// and prompt templates through the public API (the key's templates scope): create, edit a version into
// a new draft, publish, archive. Every action is one API call the token or key could make itself.
import { api, json, storedKey } from "./api.js";
import { field, h, tr, uid } from "./dom.js";
import { errorBox } from "./feedback.js";
import { t, translate } from "./i18n.js";

const TOKEN = "llmmesh.adminToken";
const SCOPES = ["generate", "sessions", "templates", "jobs", "admin"];
const DEFAULT_SCOPES = new Set(["generate", "sessions", "templates", "jobs"]);
const adminToken = () => sessionStorage.getItem(TOKEN) || "";
// The admin API takes the operator's token, or a key with the admin scope.
const admin = (method, path, body) =>
  json(method, `/admin/v1${path}`, body, { token: adminToken() || storedKey() || "", prompt: false });
const when = (stamp) => (stamp ? h("time", { datetime: stamp, dataset: { date: stamp } }) : "—");
const limit = (value) => (value ? h("span", { dataset: { number: String(value) } }) : tr("span", "admin.default_limit"));

function tokenSection(onChange) {
  const input = h("input", { id: "admin-token", type: "password", autocomplete: "off", spellcheck: "false" });
  const state = tr("p", adminToken() ? "admin.token_set" : "admin.token_unset", { class: "hint", id: "admin-token-state" });
  const form = h(
    "form",
    { id: "admin-token-form", class: "inline" },
    field("admin.token", input, "admin.token.hint"),
    tr("button", "admin.token_use", { type: "submit" }),
    tr("button", "admin.token_forget", {
      type: "button",
      onclick: () => {
        sessionStorage.removeItem(TOKEN);
        onChange();
      },
    }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(TOKEN, input.value.trim());
    onChange();
  });
  return h("section", { "aria-labelledby": "admin-token-heading" }, tr("h2", "admin.token_title", { id: "admin-token-heading" }), state, form);
}

function keysSection() {
  const status = h("div", { id: "keys-status" });
  const rows = h("tbody", { id: "keys-rows" });
  const created = h("div", { id: "key-created", "aria-live": "polite" });
  const name = h("input", { id: "key-name", type: "text", required: true, maxlength: "100" });
  const project = h("input", { id: "key-project", type: "text", spellcheck: "false", maxlength: "64" });
  const rpm = h("input", { id: "key-rpm", type: "number", min: "0", value: "0" });
  const tpm = h("input", { id: "key-tpm", type: "number", min: "0", value: "0" });
  const scopes = h(
    "fieldset",
    { id: "key-scopes", class: "checks" },
    tr("legend", "admin.scopes"),
    SCOPES.map((scope) => {
      const check = h("input", { type: "checkbox", id: `key-scope-${scope}`, value: scope, checked: DEFAULT_SCOPES.has(scope) });
      return h("div", { class: "check" }, check, tr("label", `scope.${scope}`, { for: check.id }));
    }),
  );
  const form = h(
    "form",
    { id: "key-form" },
    h("div", { class: "row" }, field("admin.key_name", name), field("admin.key_project", project, "admin.key_project.hint")),
    scopes,
    h("div", { class: "row" }, field("admin.rpm", rpm, "admin.limit.hint"), field("admin.tpm", tpm)),
    tr("button", "admin.create_key", { type: "submit", id: "key-create" }),
  );

  async function load() {
    try {
      const answer = await admin("GET", "/api-keys");
      rows.replaceChildren(
        ...answer.keys.map((key) =>
          h(
            "tr",
            { dataset: { keyId: key.id } },
            h("th", { scope: "row" }, key.name),
            h("td", {}, h("code", {}, key.id)),
            h("td", {}, key.project),
            h("td", {}, key.scopes.map((s) => tr("span", `scope.${s}`, { class: "badge" }))),
            h("td", { class: "num" }, limit(key.rpm_limit)),
            h("td", { class: "num" }, limit(key.tpm_limit)),
            h("td", {}, when(key.created_at)),
            h("td", { dataset: { cell: "state" } }, key.revoked ? [tr("span", "admin.revoked", { class: "state off" }), " ", when(key.revoked_at)] : tr("span", "admin.active", { class: "state ok" })),
            h(
              "td",
              {},
              key.revoked
                ? null
                : tr("button", "admin.revoke", {
                    type: "button",
                    "aria-label": t("admin.revoke_key", { name: key.name }),
                    onclick: async () => {
                      try {
                        await admin("DELETE", `/api-keys/${encodeURIComponent(key.id)}`);
                      } catch (error) {
                        status.replaceChildren(errorBox(error));
                      }
                      await load();
                    },
                  }),
            ),
          ),
        ),
      );
      status.replaceChildren();
      translate(rows);
    } catch (error) {
      rows.replaceChildren();
      status.replaceChildren(errorBox(error, load));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    created.replaceChildren();
    const body = {
      name: name.value.trim(),
      scopes: [...scopes.querySelectorAll("input:checked")].map((check) => check.value),
      rpm_limit: Number(rpm.value || 0),
      tpm_limit: Number(tpm.value || 0),
    };
    if (project.value.trim()) body.project = project.value.trim();
    try {
      const key = await admin("POST", "/api-keys", body);
      created.replaceChildren(
        h("div", { class: "note" }, tr("p", "admin.key_once", {}, { name: key.name }), h("p", {}, h("code", { id: "new-key-secret" }, key.key))),
      );
      translate(created);
      form.reset();
      for (const check of scopes.querySelectorAll("input")) check.checked = DEFAULT_SCOPES.has(check.value);
      await load();
    } catch (error) {
      created.replaceChildren(errorBox(error));
    }
  });

  const headings = ["name", "id", "project", "scopes", "rpm", "tpm", "created", "state", "actions"];
  const section = h(
    "section",
    { "aria-labelledby": "keys-heading" },
    tr("h2", "admin.keys", { id: "keys-heading" }),
    form,
    created,
    status,
    h("div", { class: "table-wrap" }, h("table", { id: "keys-table" }, h("thead", {}, h("tr", {}, headings.map((c) => tr("th", `admin.col.${c}`, { scope: "col" })))), rows)),
  );
  return { section, load };
}

// A version's fields as the editor holds them, and back to the API's shape.
// `onSaved(body, inPlace)`: inPlace when the draft being edited is saved itself (PUT), else a new draft.
function versionForm(version, onSaved, status) {
  const options = version?.llm_options || {};
  const system = h("textarea", { id: "tv-system", rows: "3" });
  system.value = version?.system_prompt || "";
  const user = h("textarea", { id: "tv-user", rows: "3", spellcheck: "false" });
  user.value = version?.user_prompt_template || "";
  const model = h("input", { id: "tv-model", type: "text", required: true, spellcheck: "false", value: options.model || "default" });
  const maxTokens = h("input", { id: "tv-max-tokens", type: "number", min: "1", value: options.max_tokens ?? "" });
  const temperature = h("input", { id: "tv-temperature", type: "number", min: "0", max: "2", step: "0.1", value: options.temperature ?? "" });
  const seed = h("input", { id: "tv-seed", type: "number", min: "0", value: options.seed ?? "" });
  const choices = h("textarea", { id: "tv-options", rows: "4", spellcheck: "false" });
  choices.value = (version?.options || []).map((o) => `${o.key} | ${o.label}`).join("\n");
  const form = h(
    "form",
    { id: "tv-form" },
    field("admin.system_prompt", system),
    field("admin.user_template", user, "admin.user_template.hint"),
    h("div", { class: "row" }, field("admin.model", model), field("playground.max_tokens", maxTokens), field("playground.temperature", temperature), field("playground.seed", seed)),
    field("admin.options", choices, "admin.options.hint"),
    tr("p", version?.status === "DRAFT" ? "admin.save_note_draft" : "admin.save_note", { class: "hint" }),
    h(
      "div",
      { class: "row" },
      version?.status === "DRAFT" ? tr("button", "admin.save_in_place", { type: "submit", id: "tv-save-draft", value: "in-place" }) : null,
      tr("button", "admin.save_draft", { type: version?.status === "DRAFT" ? "button" : "submit", id: "tv-save", onclick: version?.status === "DRAFT" ? () => submit(false) : undefined }),
    ),
  );
  const number = (input) => (input.value === "" ? undefined : Number(input.value));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(event.submitter?.value === "in-place");
  });
  async function submit(inPlace) {
    if (!form.reportValidity()) return;
    // Options the form does not show (stop, top_p, knowledge_bases, json_schema) are kept as they were.
    const llmOptions = { ...options, model: model.value.trim(), max_tokens: number(maxTokens), temperature: number(temperature), seed: number(seed) };
    const body = {
      system_prompt: system.value || undefined,
      user_prompt_template: user.value || undefined,
      llm_options: JSON.parse(JSON.stringify(llmOptions)),
      options: choices.value
        .split("\n")
        .map((line) => line.trim())
        .filter(Boolean)
        .map((line) => {
          const [key, ...label] = line.split("|");
          return { key: key.trim(), label: (label.join("|") || key).trim() };
        }),
    };
    try {
      await onSaved(body, inPlace);
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  }
  return form;
}

function templatesSection() {
  const status = h("div", { id: "tpl-status" });
  const list = h("ul", { id: "tpl-list", class: "templates" });
  const editor = h("div", { id: "tpl-editor" });
  const name = h("input", { id: "tpl-name", type: "text", required: true, spellcheck: "false", maxlength: "100" });
  const description = h("input", { id: "tpl-description", type: "text", maxlength: "2000" });
  const create = h(
    "form",
    { id: "tpl-create", class: "inline" },
    field("admin.template_name", name),
    field("admin.template_description", description),
    tr("button", "admin.create_template", { type: "submit" }),
  );
  const path = (template, rest = "") => api(`/templates/${encodeURIComponent(template)}${rest}`);

  // The template's versions and the editor, on `editing` (default: the newest); `justSaved` names the
  // version just saved, so the page says so.
  async function open(templateName, editing = null, justSaved = null) {
    status.replaceChildren();
    let template;
    try {
      template = await json("GET", path(templateName));
    } catch (error) {
      status.replaceChildren(errorBox(error));
      return;
    }
    const versions = [...template.versions].sort((a, b) => b.number - a.number);
    const base = editing ? versions.find((v) => v.number === editing) : versions[0];
    const change = async (number, action) => {
      try {
        await json("POST", path(templateName, `/versions/${number}/${action}`));
      } catch (error) {
        status.replaceChildren(errorBox(error));
        return;
      }
      await open(templateName, number);
      await loadList();
    };
    const saved = async (body, inPlace) => {
      const version = inPlace
        ? await json("PUT", path(templateName, `/versions/${base.number}`), body)
        : await json("POST", path(templateName, "/versions"), body);
      await open(templateName, version.number, version.number);
      await loadList();
    };
    const headingId = uid("tpl-heading");
    editor.replaceChildren(
      h(
        "section",
        { "aria-labelledby": headingId, class: "editor" },
        h("h3", { id: headingId }, template.name),
        template.description ? h("p", { class: "hint" }, template.description) : null,
        h(
          "ol",
          { class: "versions", id: "tpl-versions" },
          versions.map((v) =>
            h(
              "li",
              { dataset: { version: String(v.number) } },
              tr("span", "sessions.version_n", {}, { n: v.number }),
              " ",
              tr("span", `version.${v.status}`, { class: `status status-${v.status.toLowerCase()}`, dataset: { status: v.status } }),
              " ",
              tr("button", "admin.edit", { type: "button", "aria-label": t("admin.edit_version", { n: v.number }), onclick: () => open(templateName, v.number) }),
              v.status === "DRAFT" ? tr("button", "admin.publish", { type: "button", "aria-label": t("admin.publish_version", { n: v.number }), onclick: () => change(v.number, "publish") }) : null,
              v.status !== "ARCHIVED" ? tr("button", "admin.archive", { type: "button", "aria-label": t("admin.archive_version", { n: v.number }), onclick: () => change(v.number, "archive") }) : null,
            ),
          ),
        ),
        justSaved ? tr("p", "admin.saved", { id: "tpl-saved", role: "status", class: "note" }, { n: justSaved }) : null,
        base ? tr("h4", "admin.editing", {}, { n: base.number }) : tr("h4", "admin.first_version"),
        versionForm(base, saved, status),
      ),
    );
    translate(editor);
  }

  async function loadList() {
    try {
      const page = await json("GET", api("/templates?limit=100"));
      list.replaceChildren(
        ...(page.data.length
          ? page.data.map((template) =>
              h(
                "li",
                { dataset: { template: template.name } },
                h("button", { type: "button", class: "link", onclick: () => open(template.name) }, template.name),
                " ",
                tr("span", "admin.versions_n", { class: "hint" }, { n: template.versions.length }),
              ),
            )
          : [tr("li", "admin.no_templates", { class: "hint" })]),
      );
      translate(list);
    } catch (error) {
      status.replaceChildren(errorBox(error, loadList));
    }
  }

  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const template = await json("POST", api("/templates"), { name: name.value.trim(), description: description.value });
      create.reset();
      await loadList();
      await open(template.name);
    } catch (error) {
      status.replaceChildren(errorBox(error));
    }
  });

  const section = h(
    "section",
    { "aria-labelledby": "tpl-heading" },
    tr("h2", "admin.templates", { id: "tpl-heading" }),
    tr("p", "admin.templates.intro", { class: "hint" }),
    create,
    status,
    list,
    editor,
  );
  return { section, load: loadList };
}

export function renderAdmin(main) {
  const keys = keysSection();
  const templates = templatesSection();
  const draw = () => {
    main.replaceChildren(tr("h1", "admin.title"), tr("p", "admin.intro", { class: "hint" }), tokenSection(draw), keys.section, templates.section);
    translate(main);
    keys.load();
  };
  draw();
  templates.load();
}

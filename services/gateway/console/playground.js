// Playground: chat with a model or route, streamed, through the OpenAI-compatible API or the mesh's
// WebSocket (multi-turn, optionally a stored conversation) or the mesh's generate API (one prompt).
// The generate API and the WebSocket say which route and tier served each answer. Through the chat API
// an answer can be asked for as JSON (any object, or under a schema), and the model can call tools
// whose results are typed in and sent back.
import { ApiError, api, errorOf, events, json, request, storedKey } from "./api.js";
import { field, h, tr } from "./dom.js";
import { errorBox, figure } from "./feedback.js";
import { t, translate } from "./i18n.js";

// Kept across page switches within the tab, so going to Sessions and back keeps the chat.
const state = {
  messages: [],
  controller: null,
  conversationId: "",
  models: null,
  socket: null, // the WebSocket of the WebSocket mode, opened at its first turn and kept
};

function newConversationId() {
  return `console-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

async function loadChoices(select, status) {
  try {
    state.models = state.models || (await json("GET", api("/models")));
  } catch (error) {
    status.replaceChildren(errorBox(error));
    return;
  }
  const { routes, models, default_route: defaultRoute } = state.models;
  const routeGroup = h("optgroup", { "data-i18n-attr": "label:playground.routes" });
  for (const route of routes) {
    routeGroup.append(h("option", { value: route.name, selected: route.name === defaultRoute }, route.name));
  }
  const modelGroup = h("optgroup", { "data-i18n-attr": "label:playground.models" });
  for (const model of models.filter((m) => m.capabilities.includes("generate"))) {
    modelGroup.append(h("option", { value: model.name }, model.name));
  }
  select.replaceChildren(routeGroup, modelGroup);
  translate(select);
}

function numberOrNull(input) {
  return input.value === "" ? null : Number(input.value);
}

// Starting points for the JSON and tool modes: edited in place, kept as typed for the tab.
const EXAMPLE_SCHEMA = {
  type: "object",
  properties: { answer: { type: "string" }, confidence: { type: "number" } },
  required: ["answer", "confidence"],
  additionalProperties: false,
};
const EXAMPLE_TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "The weather in a city now",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];

// A textarea's JSON, or an ApiError naming the field (the request is then not sent).
function parsed(textarea, labelKey, check) {
  let value;
  try {
    value = JSON.parse(textarea.value);
  } catch (error) {
    throw new ApiError(0, "invalid_json", t("playground.bad_json", { field: t(labelKey), reason: error.message }), "");
  }
  if (!check(value)) throw new ApiError(0, "invalid_json", t("playground.bad_shape", { field: t(labelKey) }), "");
  return value;
}

export function renderPlayground(main) {
  const apiChoice = h(
    "select",
    { id: "pg-api" },
    h("option", { value: "chat", "data-i18n": "playground.api.chat" }),
    h("option", { value: "websocket", "data-i18n": "playground.api.websocket" }),
    h("option", { value: "generate", "data-i18n": "playground.api.generate" }),
  );
  const model = h("select", { id: "pg-model" }, h("option", { value: "" }, "…"));
  const system = h("textarea", { id: "pg-system", rows: "2" });
  const temperature = h("input", { id: "pg-temperature", type: "number", min: "0", max: "2", step: "0.1" });
  const maxTokens = h("input", { id: "pg-max-tokens", type: "number", min: "1", max: "4096", value: "128" });
  const seed = h("input", { id: "pg-seed", type: "number", min: "0" });
  const stored = h("input", { id: "pg-stored", type: "checkbox" });
  const conversation = h("input", { id: "pg-conversation", type: "text", spellcheck: "false", maxlength: "128" });
  conversation.value = state.conversationId;
  const output = h(
    "select",
    { id: "pg-output" },
    ["text", "json_object", "json_schema"].map((value) => h("option", { value, "data-i18n": `playground.output.${value}` })),
  );
  const schema = h("textarea", { id: "pg-schema", rows: "5", spellcheck: "false", class: "code" });
  schema.value = state.schema ?? JSON.stringify(EXAMPLE_SCHEMA, null, 2);
  const useTools = h("input", { id: "pg-use-tools", type: "checkbox" });
  const tools = h("textarea", { id: "pg-tools", rows: "6", spellcheck: "false", class: "code" });
  tools.value = state.tools ?? JSON.stringify(EXAMPLE_TOOLS, null, 2);
  const toolChoice = h(
    "select",
    { id: "pg-tool-choice" },
    ["auto", "required", "none"].map((value) => h("option", { value, "data-i18n": `playground.tool_choice.${value}` })),
  );
  const prompt = h("textarea", { id: "pg-prompt", rows: "3", required: true });
  // Enabled once the model list is in, so a first message never goes out without a model.
  const send = tr("button", "playground.send", { type: "submit", id: "pg-send", disabled: true });
  const stop = tr("button", "playground.stop", { type: "button", id: "pg-stop", disabled: true });
  const clear = tr("button", "playground.clear", { type: "button", id: "pg-clear" });
  const transcript = h("ol", { id: "pg-transcript", class: "transcript", "aria-live": "polite" });
  const status = h("div", { id: "pg-status" });

  const structured = h(
    "fieldset",
    { class: "settings", id: "pg-structured" },
    tr("legend", "playground.structured"),
    tr("p", "playground.structured.hint", { class: "hint" }),
    field("playground.output", output),
    field("playground.schema", schema, "playground.schema.hint"),
    h("div", { class: "check" }, useTools, tr("label", "playground.use_tools", { for: useTools.id })),
    field("playground.tools", tools, "playground.tools.hint"),
    field("playground.tool_choice", toolChoice),
  );

  const syncMode = () => {
    const chat = apiChoice.value !== "generate"; // both chat modes send conversations
    const openai = apiChoice.value === "chat"; // JSON and tools are the chat API's
    structured.disabled = !openai;
    schema.closest(".field").hidden = output.value !== "json_schema";
    tools.disabled = toolChoice.disabled = !openai || !useTools.checked;
    stored.disabled = !chat;
    conversation.disabled = !chat || !stored.checked;
    if (chat && stored.checked && !conversation.value) conversation.value = newConversationId();
  };
  // The JSON and tool settings are kept for the tab too: a pending call's results go out with the
  // tools that made it, after a visit to another page as well.
  if (state.output) output.value = state.output;
  useTools.checked = Boolean(state.useTools);
  if (state.toolChoice) toolChoice.value = state.toolChoice;
  const keep = () => Object.assign(state, { output: output.value, useTools: useTools.checked, toolChoice: toolChoice.value });
  for (const control of [apiChoice, stored, output, useTools, toolChoice]) {
    control.addEventListener("change", () => {
      keep();
      syncMode();
    });
  }
  schema.addEventListener("input", () => (state.schema = schema.value));
  tools.addEventListener("input", () => (state.tools = tools.value));

  const form = h(
    "form",
    { class: "playground", id: "pg-form" },
    h(
      "div",
      { class: "side" },
      h(
        "fieldset",
        { class: "settings" },
        tr("legend", "playground.settings"),
        field("playground.api", apiChoice, "playground.api.hint"),
        field("playground.model", model),
        field("playground.system", system),
        h(
          "div",
          { class: "row" },
          field("playground.temperature", temperature),
          field("playground.max_tokens", maxTokens),
          field("playground.seed", seed),
        ),
        h("div", { class: "check" }, stored, tr("label", "playground.stored", { for: stored.id })),
        field("playground.conversation_id", conversation, "playground.conversation_id.hint"),
      ),
      structured,
    ),
    h("section", { class: "chat", "aria-labelledby": "pg-transcript-title" },
      tr("h2", "playground.transcript", { id: "pg-transcript-title" }),
      transcript,
      status,
      field("playground.prompt", prompt),
      h("div", { class: "row" }, send, stop, clear),
    ),
  );
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  // What the chat API is asked for beyond text: JSON, tools. Throws on a textarea that does not parse.
  const structuredOf = () => {
    if (apiChoice.value !== "chat") return {};
    const asked = {};
    if (output.value === "json_object") asked.response_format = { type: "json_object" };
    if (output.value === "json_schema") {
      const given = parsed(schema, "playground.schema", (value) => value && typeof value === "object" && !Array.isArray(value));
      asked.response_format = { type: "json_schema", json_schema: { name: "answer", schema: given, strict: true } };
    }
    if (useTools.checked) {
      asked.tools = parsed(tools, "playground.tools", (value) => Array.isArray(value) && value.length > 0);
      asked.tool_choice = toolChoice.value;
    }
    return asked;
  };

  // Sends the new turns (the user's message, or the results of the model's tool calls) and streams
  // the answer in. Resolves "answered", "failed" (an error or Stop), or "invalid" when the settings
  // do not parse and nothing was sent.
  const converse = async (turns) => {
    status.replaceChildren();
    let settings;
    try {
      if (turns[0].role === "tool" && (apiChoice.value !== "chat" || !useTools.checked)) {
        throw new ApiError(0, "tools_off", t("playground.results_need_tools"), "");
      }
      settings = {
        api: apiChoice.value,
        model: model.value,
        system: system.value.trim(),
        temperature: numberOrNull(temperature),
        max_tokens: numberOrNull(maxTokens),
        seed: numberOrNull(seed),
        conversation_id: !conversation.disabled && conversation.value ? conversation.value : null,
        ...structuredOf(),
      };
    } catch (error) {
      status.replaceChildren(errorBox(error));
      return "invalid";
    }
    let ending = "failed";
    state.messages.push(...turns);
    const shown = turns.map((turn) => messageItem(turn));
    transcript.append(...shown);
    const answer = { role: "assistant", content: "" };
    const item = messageItem(answer, true);
    transcript.append(item);
    for (const element of [...shown, item]) translate(element);
    state.controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    state.conversationId = settings.conversation_id || state.conversationId;
    try {
      const served = await runTurn(settings, item, answer, state.controller.signal);
      answer.meta = served;
      if (settings.response_format && !answer.tool_calls) answer.json = jsonCheck(answer, item);
      state.messages.push(answer);
      item.append(metaLine(served));
      if (answer.tool_calls) item.append(toolResults(answer, converse));
      translate(item);
      ending = "answered";
      // An answer that calls tools waits for their results: the first result box takes the focus.
      (item.querySelector(".tool-result") || prompt).focus();
    } catch (error) {
      // The turns did not get their answer: they are not history, and go from the screen too (a
      // message goes back into the box, to send again).
      state.messages.splice(-turns.length);
      for (const element of shown) element.remove();
      if (turns[0].role === "user" && !prompt.value) prompt.value = turns[0].content;
      if (error.name === "AbortError") {
        answer.stopped = true;
        item.append(tr("p", "playground.stopped", { class: "hint stopped" }));
        translate(item);
      } else {
        item.remove();
        status.replaceChildren(errorBox(error instanceof ApiError ? error : errorOf(0, null, "")));
      }
    } finally {
      item.classList.remove("streaming");
      item.removeAttribute("aria-busy");
      state.controller = null;
      send.disabled = false;
      stop.disabled = true;
      if (ending !== "answered") prompt.focus();
    }
    return ending;
  };

  for (const message of state.messages) transcript.append(messageItem(message));
  const last = state.messages.at(-1);
  if (last?.tool_calls && !state.controller) transcript.lastElementChild.append(toolResults(last, converse));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || state.controller) return;
    if (state.messages.at(-1)?.tool_calls) {
      // The chat APIs take no message between an answer's tool calls and their results.
      status.replaceChildren(errorBox(new ApiError(0, "tool_results_pending", t("playground.results_first"), "")));
      return;
    }
    prompt.value = "";
    if ((await converse([{ role: "user", content: text }])) === "invalid") prompt.value = text; // kept to edit
  });
  stop.addEventListener("click", () => state.controller?.abort());
  clear.addEventListener("click", () => {
    state.messages = [];
    transcript.replaceChildren();
    status.replaceChildren();
    if (stored.checked) conversation.value = newConversationId();
  });

  main.replaceChildren(tr("h1", "playground.title"), form);
  translate(main);
  syncMode();
  loadChoices(model, status).finally(() => {
    send.disabled = Boolean(state.controller);
  });
}

function messageItem(message, streaming = false) {
  const item = h(
    "li",
    { class: `message ${message.role}${streaming ? " streaming" : ""}`, "aria-busy": streaming ? "true" : null },
    tr("span", `playground.role.${message.role}`, { class: "role" }, message.role === "tool" ? { name: message.name } : undefined),
    h("div", { class: "content" }, message.json?.pretty ?? message.content),
  );
  if (message.tool_calls) item.append(callList(message.tool_calls));
  if (message.json) item.append(jsonBadge(message.json.valid));
  if (message.meta) item.append(metaLine(message.meta));
  if (message.stopped) item.append(tr("p", "playground.stopped", { class: "hint stopped" }));
  return item;
}

// The model's tool calls, as they stream in: name and arguments.
function callList(calls) {
  return h(
    "ul",
    { class: "tool-calls" },
    calls.map((call) => h("li", { class: "tool-call", dataset: { call: call.id } }, tr("span", "playground.tool_call", { class: "label" }), " ", h("code", {}, `${call.function.name}(${call.function.arguments})`))),
  );
}

// The results of an answer's tool calls, one field each; sending them asks the model to go on. A
// group with its own button, not a form: it sits inside the playground's form.
function toolResults(answer, converse) {
  const inputs = answer.tool_calls.map((call, index) => {
    const input = h("textarea", { rows: "2", class: "tool-result", dataset: { call: call.id } });
    const wrapper = field("playground.tool_result", input);
    const name = answer.tool_calls.length > 1 ? `${call.function.name} #${index + 1}` : call.function.name;
    wrapper.querySelector("label").dataset.i18nVars = JSON.stringify({ name });
    return [call, input, wrapper];
  });
  const sendResults = tr("button", "playground.send_results", { type: "button", class: "send-results" });
  const group = h("div", { class: "tool-results", role: "group" }, inputs.map(([, , wrapper]) => wrapper), sendResults);
  sendResults.addEventListener("click", async () => {
    if (state.controller) return;
    const turns = inputs.map(([call, input]) => ({ role: "tool", tool_call_id: call.id, name: call.function.name, content: input.value }));
    if ((await converse(turns)) === "answered") group.remove(); // else kept, to send again
  });
  translate(group);
  return group;
}

// A JSON answer, shown indented when it parses, with a badge saying whether it does.
function jsonCheck(answer, item) {
  let pretty = null;
  try {
    pretty = JSON.stringify(JSON.parse(answer.content), null, 2);
  } catch {
    pretty = null;
  }
  if (pretty !== null) item.querySelector(".content").textContent = pretty;
  item.append(jsonBadge(pretty !== null));
  return { valid: pretty !== null, pretty: pretty ?? answer.content };
}

const jsonBadge = (valid) => tr("span", valid ? "playground.json_valid" : "playground.json_invalid", { class: `badge ${valid ? "json-ok" : "json-bad"}` });

function metaLine(outcome) {
  const parts = [figure("meta.model", outcome.model, { text: true })];
  if (outcome.route !== undefined) parts.push(figure("meta.route", outcome.route, { text: true }));
  if (outcome.tier !== undefined) parts.push(figure("meta.tier", outcome.tier));
  if (outcome.usage) {
    parts.push(figure("meta.prompt_tokens", outcome.usage.prompt_tokens));
    parts.push(figure("meta.completion_tokens", outcome.usage.completion_tokens));
  }
  if (outcome.ttftMs !== null) parts.push(figure("meta.ttft", outcome.ttftMs, { unit: "unit.ms" }));
  if (outcome.tokensPerSecond !== null) parts.push(figure("meta.speed", outcome.tokensPerSecond, { digits: 1, unit: "unit.tokens_per_s" }));
  return h("p", { class: "meta" }, parts);
}

// One turn, streamed into item; resolves with what served it and how fast.
async function runTurn(settings, item, answer, signal) {
  const content = item.querySelector(".content");
  const started = performance.now();
  let firstToken = null;
  let deltas = 0;
  const append = (text) => {
    if (!text) return;
    if (firstToken === null) firstToken = performance.now();
    deltas += 1;
    answer.content += text;
    content.textContent = answer.content;
  };
  // Tool-call pieces count as output too; the calls are shown whole as they grow.
  const calling = (calls) => {
    if (firstToken === null) firstToken = performance.now();
    deltas += 1;
    answer.tool_calls = calls;
    item.querySelector(".tool-calls")?.remove();
    content.after(callList(calls));
    translate(item);
  };
  let outcome;
  if (settings.api === "chat") outcome = await streamChat(settings, append, calling, signal);
  else if (settings.api === "websocket") outcome = await streamSocket(settings, append, signal);
  else outcome = await streamGenerate(settings, append, signal);
  const finished = performance.now();
  const completion = outcome.usage ? outcome.usage.completion_tokens : deltas;
  const seconds = firstToken === null ? 0 : (finished - firstToken) / 1000;
  return {
    ...outcome,
    ttftMs: firstToken === null ? null : Math.round(firstToken - started),
    tokensPerSecond: seconds > 0 && completion > 1 ? (completion - 1) / seconds : null,
  };
}

function sampling(settings) {
  const body = {};
  for (const name of ["temperature", "max_tokens", "seed"]) {
    if (settings[name] !== null) body[name] = settings[name];
  }
  return body;
}

// A turn as the chat APIs take it: an answer with its tool calls, a tool result with its call's id.
function wireTurn(turn) {
  if (turn.role === "tool") return { role: "tool", tool_call_id: turn.tool_call_id, content: turn.content };
  if (turn.tool_calls) return { role: "assistant", content: turn.content || null, tool_calls: turn.tool_calls };
  return { role: turn.role, content: turn.content };
}

// The turns a chat sends: a stored conversation keeps its turns (tool calls and results included) in
// the mesh, so only those since the last answer: the new message, or the results of its calls.
function chatMessages(settings) {
  const answered = state.messages.findLastIndex((turn) => turn.role === "assistant");
  const turns = settings.conversation_id ? state.messages.slice(answered + 1) : state.messages;
  return [...(settings.system ? [{ role: "system", content: settings.system }] : []), ...turns.map(wireTurn)];
}

async function streamChat(settings, append, calling, signal) {
  const messages = chatMessages(settings);
  const body = {
    model: settings.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    ...sampling(settings),
  };
  if (settings.conversation_id) body.conversation_id = settings.conversation_id;
  for (const name of ["response_format", "tools", "tool_choice"]) {
    if (settings[name] !== undefined) body[name] = settings[name];
  }
  const calls = [];
  const response = await request("POST", "/v1/chat/completions", body, { signal });
  const requestId = response.headers.get("x-request-id");
  let model = settings.model;
  let usage = null;
  for await (const { data } of events(response)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data);
    if (chunk.error) throw errorOf(502, chunk, requestId);
    model = chunk.model || model;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices || []) {
      append(choice.delta?.content);
      for (const piece of choice.delta?.tool_calls || []) {
        const call = (calls[piece.index] ||= { id: "", type: "function", function: { name: "", arguments: "" } });
        if (piece.id) call.id = piece.id;
        if (piece.function?.name) call.function.name = piece.function.name;
        call.function.arguments += piece.function?.arguments || "";
        calling(calls.filter(Boolean));
      }
    }
  }
  return { model, usage, requestId };
}

async function streamGenerate(settings, append, signal) {
  const body = { prompt: state.messages.at(-1).content, stream: true, ...sampling(settings) };
  if (settings.model) body.model = settings.model;
  if (settings.system) body.system = settings.system;
  const response = await request("POST", api("/ai/generate"), body, { signal });
  const requestId = response.headers.get("x-request-id");
  for await (const { event, data } of events(response)) {
    const payload = JSON.parse(data);
    if (event === "delta") append(payload.text);
    else if (event === "error") throw errorOf(502, payload, requestId);
    else if (event === "done") {
      return { model: payload.model, route: payload.route, tier: payload.tier, usage: payload.usage, requestId };
    }
  }
  throw new ApiError(0, "incomplete_generation", t("error.incomplete"), requestId);
}

// The mode's socket, opened when none is open; a browser cannot set headers on a WebSocket, so the
// key goes in the query (?api_key=), as the API takes it.
function openSocket() {
  if (state.socket && state.socket.readyState <= WebSocket.OPEN) return state.socket;
  const key = storedKey();
  const url = new URL(api("/chat/ws"), location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (key) url.searchParams.set("api_key", key);
  state.socket = new WebSocket(url);
  return state.socket;
}

let turnCounter = 0;

// One turn on the socket: delta frames, then done (or cancelled after Stop, or an error frame).
async function streamSocket(settings, append, signal) {
  const socket = openSocket();
  const id = `turn-${++turnCounter}`;
  const frame = { type: "chat", id, messages: chatMessages(settings), ...sampling(settings) };
  if (settings.model) frame.model = settings.model;
  if (settings.conversation_id) frame.conversation_id = settings.conversation_id;
  return new Promise((resolve, reject) => {
    const done = () => {
      socket.removeEventListener("message", onMessage);
      socket.removeEventListener("close", onClose);
      signal.removeEventListener("abort", onAbort);
    };
    const onMessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.id !== id && event.id !== null) return;
      if (event.type === "delta") append(event.text);
      else if (event.type === "done") {
        done();
        resolve({ model: event.model, route: event.route, tier: event.tier, usage: event.usage, requestId: event.request_id });
      } else if (event.type === "cancelled") {
        done();
        reject(new DOMException("stopped", "AbortError"));
      } else if (event.type === "error") {
        done();
        reject(new ApiError(0, event.error.code, event.error.message, event.error.request_id || ""));
      }
    };
    const onClose = () => {
      done();
      reject(new ApiError(0, "connection_closed", t("error.socket_closed"), ""));
    };
    const onAbort = () => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify({ type: "cancel", id }));
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", onClose);
    signal.addEventListener("abort", onAbort);
    const start = () => socket.send(JSON.stringify(frame));
    if (socket.readyState === WebSocket.OPEN) start();
    else socket.addEventListener("open", start, { once: true });
  });
}

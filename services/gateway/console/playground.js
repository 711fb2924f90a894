// Playground: chat with a model or route, streamed, through the OpenAI-compatible API or the mesh's
// WebSocket (multi-turn, optionally a stored conversation) or the mesh's generate API (one prompt).
// The generate API and the WebSocket say which route and tier served each answer.
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
  const prompt = h("textarea", { id: "pg-prompt", rows: "3", required: true });
  // Enabled once the model list is in, so a first message never goes out without a model.
  const send = tr("button", "playground.send", { type: "submit", id: "pg-send", disabled: true });
  const stop = tr("button", "playground.stop", { type: "button", id: "pg-stop", disabled: true });
  const clear = tr("button", "playground.clear", { type: "button", id: "pg-clear" });
  const transcript = h("ol", { id: "pg-transcript", class: "transcript", "aria-live": "polite" });
  const status = h("div", { id: "pg-status" });

  const syncMode = () => {
    const chat = apiChoice.value !== "generate"; // both chat modes send conversations
    stored.disabled = !chat;
    conversation.disabled = !chat || !stored.checked;
    if (chat && stored.checked && !conversation.value) conversation.value = newConversationId();
  };
  apiChoice.addEventListener("change", syncMode);
  stored.addEventListener("change", syncMode);

  for (const message of state.messages) transcript.append(messageItem(message));

  const form = h(
    "form",
    { class: "playground", id: "pg-form" },
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
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || state.controller) return;
    prompt.value = "";
    status.replaceChildren();
    const user = { role: "user", content: text };
    state.messages.push(user);
    transcript.append(messageItem(user));
    const answer = { role: "assistant", content: "" };
    const item = messageItem(answer, true);
    transcript.append(item);
    state.controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    const settings = {
      api: apiChoice.value,
      model: model.value,
      system: system.value.trim(),
      temperature: numberOrNull(temperature),
      max_tokens: numberOrNull(maxTokens),
      seed: numberOrNull(seed),
      conversation_id: !conversation.disabled && conversation.value ? conversation.value : null,
    };
    state.conversationId = settings.conversation_id || state.conversationId;
    try {
      const outcome = await runTurn(settings, item, answer, state.controller.signal);
      answer.meta = outcome;
      state.messages.push(answer);
      item.append(metaLine(outcome));
      translate(item);
    } catch (error) {
      state.messages.pop(); // the user turn did not get its answer: it is not history
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
      prompt.focus();
    }
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
    tr("span", `playground.role.${message.role}`, { class: "role" }),
    h("div", { class: "content" }, message.content),
  );
  if (message.meta) item.append(metaLine(message.meta));
  if (message.stopped) item.append(tr("p", "playground.stopped", { class: "hint stopped" }));
  return item;
}

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
  let outcome;
  if (settings.api === "chat") outcome = await streamChat(settings, append, signal);
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

// The turns a chat sends: a stored conversation keeps its turns in the mesh, so only the new one.
function chatMessages(settings) {
  const turns = settings.conversation_id ? state.messages.slice(-1) : state.messages;
  return [
    ...(settings.system ? [{ role: "system", content: settings.system }] : []),
    ...turns.map(({ role, content }) => ({ role, content })),
  ];
}

async function streamChat(settings, append, signal) {
  const messages = chatMessages(settings);
  const body = {
    model: settings.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    ...sampling(settings),
  };
  if (settings.conversation_id) body.conversation_id = settings.conversation_id;
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
    for (const choice of chunk.choices || []) append(choice.delta?.content);
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

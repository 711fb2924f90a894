// The public API as the console calls it: the user's key (sessionStorage only), errors in the mesh's
// shape, and Server-Sent Events read from a fetch stream (so a run can be cancelled).
import { t } from "./i18n.js";

const KEY = "llmmesh.apiKey";
export const API_PREFIX = document.querySelector('meta[name="llmmesh-api-prefix"]').content;
export const api = (path) => `${API_PREFIX}${path}`;

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

export const storedKey = () => sessionStorage.getItem(KEY);
export function saveKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

// Set by the app: opens the key dialog with a reason, resolves true once a key was given.
let keyPrompt = async () => false;
export const setKeyPrompt = (prompt) => {
  keyPrompt = prompt;
};

// An error from a response body in either of the gateway's shapes (ours, or OpenAI's on /v1): both
// carry error.code, error.message and error.request_id.
export function errorOf(status, body, requestId) {
  const error = (body && body.error) || {};
  return new ApiError(
    status,
    error.code || `http_${status}`,
    error.message || t("error.unreadable"),
    error.request_id || requestId || "",
  );
}

async function readError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return errorOf(response.status, body, response.headers.get("x-request-id"));
}

// One request; a 401 asks the user for a key and tries again with it. The admin page passes its own
// `token` (the admin API's) and `prompt: false`: its 401 is the page's to show.
export async function request(method, path, body, { signal, token = undefined, prompt = true } = {}) {
  for (;;) {
    const headers = { accept: "application/json, text/event-stream" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const key = token === undefined ? storedKey() : token;
    if (key) headers.authorization = `Bearer ${key}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "network_error", t("error.network"), "");
    }
    if (response.status === 401) {
      const error = await readError(response);
      if (prompt && (await keyPrompt(error))) continue;
      throw error;
    }
    if (!response.ok) throw await readError(response);
    return response;
  }
}

export async function json(method, path, body, options = {}) {
  const response = await request(method, path, body, options);
  return response.status === 204 ? null : response.json();
}

// The events of an SSE response: {event, data}, comments (pings) skipped.
export async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const frames = buffer.split(/\r?\n\r?\n/);
    buffer = frames.pop();
    for (const frame of frames) {
      let event = "message";
      const data = [];
      for (const line of frame.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

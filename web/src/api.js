// Calls to the pyexec API. Every URL is relative to the page, so the page
// works under any path prefix behind a proxy of the same origin. Every call
// carries the API key of the page's "API key" field, when one is set, as
// X-API-Key (apikey.js).

import { getKey, validKey } from "./apikey.js";

// ApiError is an answer other than 2xx: the service's {"error": {code,
// message}} when it sent one.
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function request(method, url, body, opts = {}) {
  const init = { method, headers: {}, signal: opts.signal, keepalive: opts.keepalive };
  const key = getKey();
  if (key) {
    if (!validKey(key)) {
      throw new ApiError(0, "bad_api_key", "the API key may hold only printable ASCII characters without spaces");
    }
    init.headers["X-API-Key"] = key;
  }
  if (body !== undefined) {
    if (body instanceof Blob) {
      init.body = body;
      init.headers["Content-Type"] = "application/octet-stream";
    } else {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", "the service did not answer: " + err.message);
  }
  if (resp.status === 204) return null;
  if (opts.blob && resp.ok) return resp.blob();
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(resp.status, e.code || "http_" + resp.status,
      e.message || resp.statusText || "request failed", resp.headers.get("Retry-After"));
  }
  return data;
}

export const api = {
  templates: () => request("GET", "templates"),
  template: (id) => request("GET", "templates/" + encodeURIComponent(id)),
  validate: (code, signal) => request("POST", "validate", { code }, { signal }),
  execute: (body) => request("POST", "execute", body),
  createSession: (body) => request("POST", "sessions", body),
  session: (id) => request("GET", "sessions/" + encodeURIComponent(id)),
  // signal aborts the request: the service then interrupts the cell.
  runCell: (id, body, signal) => request("POST", "sessions/" + encodeURIComponent(id) + "/execute", body, { signal }),
  putFile: (id, name, blob) =>
    request("PUT", "sessions/" + encodeURIComponent(id) + "/files/" + encodeURIComponent(name), blob),
  deleteSession: (id, keepalive = false) =>
    request("DELETE", "sessions/" + encodeURIComponent(id), undefined, { keepalive }),
  // file is a session's file as a Blob (a link cannot send the key).
  file: (id, name) => request("GET", api.fileURL(id, name), undefined, { blob: true }),
  fileURL: (id, name) =>
    "sessions/" + encodeURIComponent(id) + "/files/" + name.split("/").map(encodeURIComponent).join("/"),
};

// Calls to the pyexec API. Every URL is relative to the page, so the page
// works under any path prefix behind a proxy of the same origin.

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
  runCell: (id, body) => request("POST", "sessions/" + encodeURIComponent(id) + "/execute", body),
  putFile: (id, name, blob) =>
    request("PUT", "sessions/" + encodeURIComponent(id) + "/files/" + encodeURIComponent(name), blob),
  deleteSession: (id, keepalive = false) =>
    request("DELETE", "sessions/" + encodeURIComponent(id), undefined, { keepalive }),
  fileURL: (id, name) =>
    "sessions/" + encodeURIComponent(id) + "/files/" + name.split("/").map(encodeURIComponent).join("/"),
};

// The playground page: wiring of the controls, single runs, share links,
// and session mode (a notebook of cells run one after another in one
// session, files uploaded into it).

import { api, ApiError } from "./api.js";
import { getKey, setKey, validKey } from "./apikey.js";
import { createEditor, getCode, setCode, highlightErrorLine } from "./editor.js";
import { el, formatBytes, renderResult, renderFailure } from "./render.js";
import { readLocation, shareURL } from "./share.js";

const $ = (id) => document.getElementById(id);

const defaultCode = `# Write Python and press Ctrl+Enter (Cmd+Enter on a Mac) to run it.
import numpy as np

values = np.arange(10)
print("sum:", values.sum())
values.mean()
`;

const state = {
  templates: [],
  // template is the last template loaded: its id, code and input files.
  template: null,
  running: false,
  freeDownloads: null,
  session: null, // {id, expiresAt, idleSeconds, lastUsed, ended}
  cells: [],
  chain: Promise.resolve(),
  nextCell: 1,
};

let editor;

function timeoutValue() {
  const v = $("timeout").value.trim();
  if (v === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

function runBody(code) {
  const body = { code, chart_format: $("chart-format").value };
  const t = timeoutValue();
  if (t !== undefined) body.timeout = t;
  if (state.template && state.template.files && state.template.files.length) body.files = state.template.files;
  return body;
}

function setStatus(text) {
  $("status").textContent = text;
}

// ---- API key ---------------------------------------------------------------

// askForKey points at the API key field after a 401: marked invalid and
// focused, so the key can be typed at once.
function askForKey() {
  const f = $("api-key");
  f.setAttribute("aria-invalid", "true");
  f.focus();
}

// explain turns a failed call into what the page shows: a 401 becomes a
// request for a key (the key itself is never shown), a 429 says when to
// retry. Anything else is shown as the service said it.
function explain(err) {
  if (!(err instanceof ApiError)) return new ApiError(0, "error", String(err));
  if (err.status === 401) {
    askForKey();
    const msg = getKey()
      ? "the service did not accept this API key. Check the key in the API key field above and try again."
      : "this service needs an API key. Enter it in the API key field above and try again.";
    return new ApiError(401, "unauthorized", msg);
  }
  if (err.code === "bad_api_key") askForKey();
  return err;
}

// failureText is explain(err) as one line for the status bar.
function failureText(err) {
  const e = explain(err);
  return e.message + (e.retryAfter ? ` Try again in ${e.retryAfter} s.` : "");
}

function setupKeyField() {
  const f = $("api-key");
  f.value = getKey(); // the value property: the key never becomes an attribute
  f.addEventListener("input", () => {
    const key = f.value.trim();
    setKey(key); // an invalid key is kept too, so that it is not an older one that is sent
    if (key && !validKey(key)) {
      f.setAttribute("aria-invalid", "true");
      setStatus("The API key may hold only printable ASCII characters without spaces.");
      return;
    }
    f.removeAttribute("aria-invalid");
  });
  // Enter in the field runs the code (after a 401 the focus is here).
  f.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !state.session) {
      e.preventDefault();
      runSingle();
    }
  });
}

// ---- single runs ----------------------------------------------------------

async function runSingle() {
  if (state.session) {
    const cell = state.cells.find((c) => c.view.hasFocus) || state.cells[state.cells.length - 1];
    if (cell) runCell(cell);
    return;
  }
  if (state.running) return;
  state.running = true;
  const results = $("results");
  $("run").disabled = true;
  results.setAttribute("aria-busy", "true");
  results.replaceChildren(el("p", { class: "running", text: "Running…" }));
  highlightErrorLine(editor, null);
  try {
    const res = await api.execute(runBody(getCode(editor)));
    if (state.freeDownloads) state.freeDownloads();
    state.freeDownloads = renderResult(results, res, { onLine: (l) => highlightErrorLine(editor, l) });
    if (res.error && res.error.line) highlightErrorLine(editor, res.error.line);
  } catch (err) {
    renderFailure(results, explain(err));
  } finally {
    state.running = false;
    $("run").disabled = false;
    results.removeAttribute("aria-busy");
  }
}

// ---- templates -----------------------------------------------------------

async function loadTemplates() {
  try {
    const body = await api.templates();
    state.templates = Array.isArray(body && body.templates) ? body.templates : [];
  } catch (err) {
    setStatus("Templates could not be loaded: " + failureText(err));
    return;
  }
  const sel = $("template");
  const groups = new Map();
  for (const t of state.templates) {
    if (!groups.has(t.category)) groups.set(t.category, el("optgroup", { label: t.category }));
    groups.get(t.category).append(el("option", { value: t.id, title: t.description, text: t.title }));
  }
  sel.append(...groups.values());
}

async function useTemplate(id) {
  let t = state.templates.find((x) => x.id === id);
  if (!t) {
    try {
      t = await api.template(id);
    } catch (err) {
      setStatus(`Template "${id}" could not be loaded: ${failureText(err)}`);
      return false;
    }
  }
  state.template = { id: t.id, code: t.code, files: t.files || [] };
  $("template").value = t.id;
  if (state.session) {
    // The template's input files go into the session, where its code reads them.
    await uploadFiles(state.template.files.map((f) =>
      new File([Uint8Array.from(atob(f.content), (c) => c.charCodeAt(0))], f.name)));
    addCell(t.code).view.focus();
  } else {
    setCode(editor, t.code);
    history.replaceState(null, "", "?template=" + encodeURIComponent(t.id));
  }
  setStatus(`Loaded template: ${t.title}.`);
  return true;
}

// ---- share -----------------------------------------------------------------

async function share() {
  const code = state.session ? state.cells.map((c) => getCode(c.view)).join("\n\n") : getCode(editor);
  const template = state.template && state.template.code === code ? state.template.id : null;
  const url = shareURL({ code, template, timeout: $("timeout").value.trim() });
  const box = $("share-url");
  box.value = url;
  $("share-box").hidden = false;
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch {
    box.focus();
    box.select();
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
  }
  setStatus(copied ? "Link copied to the clipboard." : "Copy the link below.");
}

// ---- session mode --------------------------------------------------------

function fmtTime(d) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtLeft(ms) {
  if (ms <= 0) return "now";
  const s = Math.round(ms / 1000);
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function renderSessionInfo() {
  const s = state.session;
  const info = $("session-info");
  if (!s) {
    info.replaceChildren();
    return;
  }
  if (s.ended) {
    info.replaceChildren(el("strong", { text: "Session ended" }), `: ${s.ended}. `,
      "Turn session mode off and on to start a new one.");
    return;
  }
  const now = Date.now();
  const idleEnd = new Date(s.lastUsed + s.idleSeconds * 1000);
  const end = idleEnd < s.expiresAt ? idleEnd : s.expiresAt;
  info.replaceChildren(
    "Session ", el("code", { title: s.id, text: s.id.slice(0, 8) + "…" }),
    " expires at ", el("time", { datetime: end.toISOString(), text: fmtTime(end) }),
    ` (in ${fmtLeft(end - now)}`,
    idleEnd < s.expiresAt ? `; each run extends it up to ${fmtTime(s.expiresAt)}` : "", ").");
}

function setSessionEnded(reason) {
  if (!state.session) return;
  state.session.ended = reason;
  clearInterval(state.session.timer);
  for (const c of state.cells) c.runBtn.disabled = true;
  $("end-session").disabled = true;
  $("upload").disabled = true;
  renderSessionInfo();
}

async function startSession() {
  const body = {};
  const t = timeoutValue();
  if (t !== undefined) body.timeout = t;
  $("session-mode").disabled = true;
  setStatus("Starting a session…");
  let s;
  try {
    s = await api.createSession(body);
  } catch (err) {
    $("session-mode").checked = false;
    $("session-mode").disabled = false;
    setStatus("The session could not be started: " + failureText(err));
    return;
  }
  $("session-mode").disabled = false;
  state.session = {
    id: s.id,
    expiresAt: new Date(s.expires_at),
    idleSeconds: s.idle_timeout_seconds || 600,
    lastUsed: Date.now(),
    ended: null,
  };
  state.session.timer = setInterval(tickSession, 1000);
  $("single").hidden = true;
  $("session").hidden = false;
  $("end-session").disabled = false;
  $("upload").disabled = false;
  $("session-files").replaceChildren();
  for (const c of state.cells) {
    c.runBtn.disabled = false;
    c.prompt.textContent = "[ ]";
    c.out.replaceChildren();
  }
  if (!state.cells.length) addCell("");
  renderSessionInfo();
  setStatus("Session started. Cells run in it one after another and share their variables.");
  state.cells[0].view.focus();
}

let ticks = 0;
async function tickSession() {
  renderSessionInfo();
  const s = state.session;
  if (!s || s.ended || ++ticks % 30 !== 0) return;
  try {
    const info = await api.session(s.id);
    s.expiresAt = new Date(info.expires_at);
    if (info.last_used_at) s.lastUsed = Date.parse(info.last_used_at);
    if (Array.isArray(info.files)) showSessionFiles(info.files);
  } catch (err) {
    if (err.status === 404) setSessionEnded(err.message);
  }
}

async function endSession({ keepalive = false } = {}) {
  const s = state.session;
  if (!s) return;
  if (!s.ended) {
    try {
      await api.deleteSession(s.id, keepalive);
    } catch (err) {
      if (err.status !== 404) {
        setStatus("The session could not be ended: " + failureText(err));
        return;
      }
    }
  }
  clearInterval(s.timer);
  state.session = null;
  if (keepalive) return;
  $("session-mode").checked = false;
  $("session").hidden = true;
  $("single").hidden = false;
  renderSessionInfo();
  setStatus("Session ended.");
}

function addCell(code, after) {
  const n = state.nextCell++;
  const prompt = el("span", { class: "prompt", text: "[ ]", "aria-label": "execution count" });
  const runBtn = el("button", { type: "button", class: "run-cell", text: "Run", title: "Run this cell (Ctrl+Enter)" });
  const delBtn = el("button", { type: "button", class: "secondary", text: "Delete", title: "Delete this cell" });
  const edWrap = el("div", { class: "cell-editor" });
  const out = el("div", { class: "cell-out", "aria-live": "polite" });
  const li = el("li", { class: "cell", "data-cell": n },
    el("div", { class: "cell-head" }, prompt, el("span", { class: "cell-title", text: `Cell ${n}` }), runBtn, delBtn),
    edWrap, out);
  const cell = { n, li, prompt, runBtn, out };
  runBtn.setAttribute("aria-label", `Run cell ${n}`);
  delBtn.setAttribute("aria-label", `Delete cell ${n}`);
  cell.view = createEditor(edWrap, {
    doc: code,
    label: `Python code of cell ${n}`,
    onRun: () => runCell(cell),
    onShiftRun: () => {
      runCell(cell);
      const i = state.cells.indexOf(cell);
      (state.cells[i + 1] || addCell("")).view.focus();
    },
  });
  runBtn.addEventListener("click", () => (cell.stop ? cell.stop() : runCell(cell)));
  delBtn.addEventListener("click", () => {
    state.cells.splice(state.cells.indexOf(cell), 1);
    cell.view.destroy();
    li.remove();
  });
  const i = after ? state.cells.indexOf(after) + 1 : state.cells.length;
  state.cells.splice(i, 0, cell);
  const before = state.cells[i + 1];
  $("cells").insertBefore(li, before ? before.li : null);
  if (state.session && state.session.ended) runBtn.disabled = true;
  return cell;
}

// setStoppable turns a running cell's Run button into Stop (stop: what it
// does), and back (stop: null).
function setStoppable(cell, stop) {
  cell.stop = stop;
  cell.runBtn.textContent = stop ? "Stop" : "Run";
  cell.runBtn.title = stop ? "Interrupt this cell (a KeyboardInterrupt, as in a notebook)" : "Run this cell (Ctrl+Enter)";
  cell.runBtn.setAttribute("aria-label", `${stop ? "Stop" : "Run"} cell ${cell.n}`);
  cell.runBtn.classList.toggle("stop", Boolean(stop));
}

// settleAfterStop waits until the service has ended the interrupted cell
// (its code stopped, or the session ended because it did not), so that the
// next cell is not queued behind it; at most a few seconds.
async function settleAfterStop(s) {
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 200));
    try {
      const info = await api.session(s.id);
      if (info.state !== "running") return;
    } catch (err) {
      if (err.status === 404) setSessionEnded(err.message);
      return;
    }
  }
}

// runCell queues the cell: cells run one after another, in the order asked.
// A running cell's Stop aborts its request, which the service answers by
// interrupting the code.
function runCell(cell) {
  const s = state.session;
  if (!s || s.ended) return;
  cell.prompt.textContent = "[*]";
  cell.li.classList.add("queued");
  const code = getCode(cell.view);
  state.chain = state.chain.then(async () => {
    if (state.session !== s || s.ended) return;
    cell.li.classList.remove("queued");
    cell.li.classList.add("running");
    cell.out.setAttribute("aria-busy", "true");
    highlightErrorLine(cell.view, null);
    const ctl = new AbortController();
    setStoppable(cell, () => ctl.abort());
    try {
      const body = runBody(code);
      delete body.files; // a session's files are uploaded into it
      const res = await api.runCell(s.id, body, ctl.signal);
      s.lastUsed = Date.now();
      if (cell.free) cell.free();
      cell.free = renderResult(cell.out, res, { onLine: (l) => highlightErrorLine(cell.view, l) });
      if (res.error && res.error.line) highlightErrorLine(cell.view, res.error.line);
      const info = res.session || {};
      cell.prompt.textContent = `[${info.executions ?? "?"}]`;
      if (info.expires_at) s.expiresAt = new Date(info.expires_at);
      if (info.ended) setSessionEnded(info.end_reason || "the session ended");
      if (res.output && res.output.files && res.output.files.length) refreshFiles();
    } catch (err) {
      cell.prompt.textContent = "[!]";
      if (err.name === "AbortError") {
        renderFailure(cell.out, new ApiError(0, "interrupted",
          "stopped: the code got a KeyboardInterrupt, and the session keeps its variables (unless the code did not stop: then the session ended)."));
        setStoppable(cell, null);
        await settleAfterStop(s);
      } else {
        renderFailure(cell.out, explain(err));
        if (err.status === 404) setSessionEnded(err.message);
      }
    } finally {
      setStoppable(cell, null);
      cell.li.classList.remove("running");
      cell.out.removeAttribute("aria-busy");
      renderSessionInfo();
    }
  });
}

function showSessionFiles(files) {
  const list = $("session-files");
  const s = state.session;
  list.replaceChildren(...files.map((f) => {
    const a = el("a", { href: api.fileURL(s.id, f.name), download: f.name.split("/").pop(), text: f.name });
    a.addEventListener("click", (e) => downloadSessionFile(e, s, f.name, a.download));
    return el("li", {}, a, el("span", { class: "muted", text: " " + formatBytes(f.size) }));
  }));
}

// downloadSessionFile fetches a session's file through api.js, which sends
// the API key (a followed link cannot), and saves it from a blob: URL. A
// click with a modifier (new tab, new window) keeps the plain link.
async function downloadSessionFile(e, s, name, saveAs) {
  if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  let blob;
  try {
    blob = await api.file(s.id, name);
  } catch (err) {
    setStatus(`${name} could not be downloaded: ${failureText(err)}`);
    if (err.status === 404) setSessionEnded(err.message);
    return;
  }
  const url = URL.createObjectURL(blob);
  const tmp = el("a", { href: url, download: saveAs, hidden: "" });
  document.body.append(tmp);
  tmp.click();
  tmp.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function refreshFiles() {
  const s = state.session;
  if (!s || s.ended) return;
  try {
    const info = await api.session(s.id);
    if (Array.isArray(info.files)) showSessionFiles(info.files);
  } catch {
    // the next tick or run reports a session that is gone
  }
}

async function uploadFiles(files) {
  if (!files.length) return;
  if (!state.session) {
    $("session-mode").checked = true;
    await startSession();
    if (!state.session) return;
  }
  const s = state.session;
  for (const f of files) {
    setStatus(`Uploading ${f.name}…`);
    try {
      const r = await api.putFile(s.id, f.name, f);
      setStatus(`Uploaded ${r.name} (${formatBytes(r.size)}) into the session: read it with pd.read_csv(${JSON.stringify(r.name)}).`);
    } catch (err) {
      setStatus(`${f.name} was not uploaded: ${failureText(err)}`);
      if (err.status === 404) setSessionEnded(err.message);
    }
  }
  await refreshFiles();
}

function setupDrop() {
  const overlay = $("drop-overlay");
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    depth++;
    overlay.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  document.addEventListener("dragover", (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    uploadFiles(Array.from(e.dataTransfer.files));
  });
}

// ---- start -----------------------------------------------------------------

async function main() {
  const want = readLocation();
  editor = createEditor($("editor"), {
    doc: "",
    label: "Python code",
    onRun: runSingle,
    onChange: () => {
      if (state.template && getCode(editor) !== state.template.code && location.search) {
        history.replaceState(null, "", location.pathname);
      }
    },
  });
  if (/Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent)) {
    $("run").querySelector("kbd").textContent = "⌘+Enter";
  }
  setupKeyField();
  $("run").addEventListener("click", runSingle);
  $("share").addEventListener("click", share);
  $("template").addEventListener("change", (e) => {
    if (e.target.value) useTemplate(e.target.value);
  });
  $("session-mode").addEventListener("change", (e) => (e.target.checked ? startSession() : endSession()));
  $("end-session").addEventListener("click", () => endSession());
  $("add-cell").addEventListener("click", () => addCell("").view.focus());
  $("upload").addEventListener("change", (e) => {
    uploadFiles(Array.from(e.target.files));
    e.target.value = "";
  });
  window.addEventListener("pagehide", () => {
    if (state.session && !state.session.ended) endSession({ keepalive: true });
  });
  setupDrop();
  // A share link pasted into this tab changes only the fragment.
  window.addEventListener("hashchange", () => {
    const w = readLocation();
    if (w.code == null) return;
    if (state.session) endSession();
    state.template = null;
    $("template").value = "";
    setCode(editor, w.code);
    if (w.run) runSingle();
  });
  if (want.timeout) $("timeout").value = want.timeout;

  const templates = loadTemplates();
  let loaded = false;
  if (want.code != null) {
    setCode(editor, want.code);
    loaded = true;
  } else if (want.template) {
    await templates;
    loaded = await useTemplate(want.template);
  }
  if (!loaded) setCode(editor, defaultCode);
  await templates;
  document.body.dataset.ready = "1";
  if (want.run && loaded) runSingle();
}

main().catch((err) => {
  setStatus("The page could not start: " + err.message);
  throw err;
});

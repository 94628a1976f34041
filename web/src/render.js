// Drawing an /execute answer. Everything the code produced is data: the DOM
// is built with createElement and textContent only (never innerHTML, never
// the dataframes[].html field), images come from data: URLs into <img>, and
// plotly draws figures from their data and layout.

import { loadPlotly } from "./plotly.js";

// el makes an element with attributes (set as properties when they are
// ones, else as attributes) and children (strings become text nodes).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function formatBytes(n) {
  if (n == null) return "";
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1024 / 1024).toFixed(1) + " MiB";
}

function formatMs(ms) {
  if (ms == null) return "";
  return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s";
}

// cellText is how a table cell shows a JSON value: null (NaN, NaT, None)
// empty, strings as they are, anything else as JSON.
export function cellText(v) {
  if (v == null) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

// label is a column or index label: a tuple (MultiIndex) joined.
function label(v) {
  if (Array.isArray(v)) return v.map(cellText).join(" / ");
  return cellText(v);
}

function section(title, ...children) {
  return el("section", { class: "out-section" }, el("h3", { text: title }), ...children);
}

function flag(text) {
  return el("span", { class: "flag", text });
}

function stream(name, text, truncated) {
  if (!text && !truncated) return null;
  return section(name,
    truncated ? el("p", { class: "note" }, flag("truncated"), " the output was cut at the service's limit") : null,
    el("pre", { class: "stream " + name, text: text || "" }));
}

function statusLine(res) {
  const r = res.resources || {};
  const parts = [
    el("span", { class: "status status-" + res.status, text: String(res.status || "unknown").replace(/_/g, " ") }),
  ];
  const facts = [
    ["ran", formatMs(res.execution_time)],
    ["request", formatMs(r.duration_ms)],
    ["CPU", formatMs(r.cpu_time_ms)],
    ["memory", r.peak_memory_bytes ? formatBytes(r.peak_memory_bytes) + (r.memory_limit_bytes ? " of " + formatBytes(r.memory_limit_bytes) : "") : ""],
    ["sandbox", (r.warm ? "warm" : "cold") + (r.sandbox === "data" ? ", data libraries" : r.sandbox === "none" ? ", plain" : "")],
  ];
  const dl = el("dl", { class: "resources" });
  for (const [k, v] of facts) {
    if (!v) continue;
    dl.append(el("div", {}, el("dt", { text: k }), el("dd", { text: v })));
  }
  if (r.oom_killed) dl.append(el("div", {}, el("dt", { text: "memory" }), el("dd", { text: "out of memory: killed" })));
  return el("div", { class: "status-line" }, ...parts, dl);
}

function errorBox(err, violations, onLine) {
  const box = el("div", { class: "error-box", role: "alert" });
  const head = el("p", { class: "error-head" }, el("strong", { text: err.type || "Error" }), ": ", err.message || "");
  box.append(head);
  if (err.line) {
    const b = el("button", { type: "button", class: "linkish",
      text: "line " + err.line + (err.column ? ", column " + err.column : "") });
    b.addEventListener("click", () => onLine && onLine(err.line));
    box.append(el("p", { class: "error-where" }, "at ", b));
  }
  if (violations && violations.length) {
    box.append(el("ul", { class: "violations" },
      violations.map((v) => el("li", { text: `line ${v.line}, column ${v.column}: ${v.message} (${v.rule})` }))));
  }
  if (err.traceback) box.append(el("pre", { class: "traceback", text: err.traceback }));
  return box;
}

function chartNode(c, i) {
  const fig = el("figure", { class: "chart" });
  const name = c.title || `Chart ${i + 1}`;
  if (c.data == null || c.error) {
    fig.append(el("p", { class: "chart-error", role: "note" }, el("strong", { text: name + " was refused: " }), c.error || "no data"));
    return fig;
  }
  if (c.type === "plotly") {
    const div = el("div", { class: "plotly-chart", role: "img", "aria-label": name });
    fig.append(div);
    loadPlotly().then((Plotly) => {
      const data = Array.isArray(c.data.data) ? c.data.data : [];
      const layout = c.data.layout && typeof c.data.layout === "object" ? c.data.layout : {};
      return Plotly.newPlot(div, data, layout, { responsive: true, displaylogo: false });
    }).catch((err) => {
      div.replaceWith(el("p", { class: "chart-error", text: "The plotly figure could not be drawn: " + err.message }));
    });
    return fig;
  }
  const mime = c.format === "svg" ? "image/svg+xml" : "image/png";
  if (typeof c.data !== "string") {
    fig.append(el("p", { class: "chart-error", text: name + ": unexpected chart data" }));
    return fig;
  }
  const img = el("img", { class: "chart-img", alt: name, src: `data:${mime};base64,${c.data}` });
  if (c.width && c.height) {
    img.width = c.width;
    img.height = c.height;
  }
  fig.append(img);
  if (c.title) fig.append(el("figcaption", { text: c.title }));
  return fig;
}

function indexValues(index) {
  if (!index) return null;
  if (Array.isArray(index)) return index;
  return Array.isArray(index.values) ? index.values : null;
}

function indexName(index) {
  if (!index || Array.isArray(index)) return "";
  if (Array.isArray(index.names) && index.names.some((n) => n != null)) return index.names.map(cellText).join(" / ");
  return index.name == null ? "" : cellText(index.name);
}

// dataFrameNode builds the table from columns, index and data.
export function dataFrameNode(df) {
  const columns = Array.isArray(df.columns) ? df.columns : [];
  const rows = Array.isArray(df.data) ? df.data : [];
  const idx = indexValues(df.index);
  const dtypes = df.dtypes || {};
  const shape = Array.isArray(df.shape) ? df.shape.join(" × ") : "";
  const summary = () => [
    el("strong", { text: df.name || "DataFrame" }),
    ` ${df.kind || "dataframe"}${shape ? ", shape " + shape : ""}, ${df.total_rows ?? rows.length} rows`,
    df.truncated ? [" ", flag("truncated"), ` showing the first ${rows.length}`] : null,
    df.columns_truncated ? [" ", flag("columns truncated")] : null];
  const caption = el("caption", { class: "visually-hidden" }, ...summary());
  const head = el("thead", {},
    el("tr", {}, el("th", { scope: "col", class: "index-name", text: indexName(df.index) }),
      columns.map((c) => el("th", { scope: "col", text: label(c) }))),
    el("tr", { class: "dtypes" }, el("th", { scope: "row", class: "index-name", text: df.index && df.index.dtype ? df.index.dtype : "" }),
      columns.map((c) => el("td", { text: dtypes[label(c)] ?? dtypes[cellText(c)] ?? "" }))));
  const body = el("tbody", {},
    rows.map((row, i) => el("tr", {},
      el("th", { scope: "row", text: idx ? label(idx[i]) : String(i) }),
      (Array.isArray(row) ? row : [row]).map((v) => el("td", { class: v == null ? "null" : typeof v === "number" ? "num" : null, text: cellText(v) })))));
  return el("div", { class: "dataframe-block" },
    el("p", { class: "df-summary", "aria-hidden": "true" }, ...summary()),
    el("div", { class: "table-wrap" }, el("table", { class: "dataframe" }, caption, head, body)));
}

function variablesNode(vars, truncated) {
  const names = Object.keys(vars || {}).sort();
  if (!names.length) return null;
  return section("Variables", el("div", { class: "table-wrap" }, el("table", { class: "variables" },
    el("thead", {}, el("tr", {}, ["name", "type", "size", "value"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, names.map((n) => {
      const v = vars[n] || {};
      const size = v.shape ? v.shape.join(" × ") : v.len != null ? "len " + v.len : "";
      return el("tr", {}, el("th", { scope: "row", text: n }),
        el("td", { text: v.type + (v.dtype ? " (" + v.dtype + ")" : "") }),
        el("td", { text: size }), el("td", {}, el("code", { text: v.repr })));
    })))),
  truncated ? el("p", { class: "note" }, flag("truncated"), " more variables than shown") : null);
}

function base64ToBytes(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

// filesNode offers the output files as downloads. The Blob's type is
// always octet-stream, so opening the link downloads it and never renders
// what the code wrote (an .html file included).
function filesNode(files, truncated, skipped, urls) {
  if (!(files && files.length) && !truncated && !(skipped && skipped.length)) return null;
  const list = el("ul", { class: "files" });
  for (const f of files || []) {
    let href = null;
    try {
      href = URL.createObjectURL(new Blob([base64ToBytes(f.content || "")], { type: "application/octet-stream" }));
      urls.push(href);
    } catch {
      href = null;
    }
    const base = String(f.name).split("/").pop();
    list.append(el("li", {},
      href ? el("a", { href, download: base, text: f.name }) : el("span", { text: f.name + " (unreadable)" }),
      el("span", { class: "muted", text: ` ${formatBytes(f.size)}${f.mime ? ", " + f.mime : ""}` })));
  }
  return section("Files",
    list,
    truncated ? el("p", { class: "note" }, flag("truncated"), " some files were left out (over the size or count limit)") : null,
    skipped && skipped.length ? el("ul", { class: "note" }, skipped.map((s) => el("li", { text: `${s.name} skipped: ${s.reason}` }))) : null);
}

// renderResult replaces target's content with the answer res. onLine is
// called with a line number when the user asks to see the error's line.
// It returns a function that frees the downloads' object URLs.
export function renderResult(target, res, { onLine } = {}) {
  const urls = [];
  const out = res.output || {};
  const nodes = [statusLine(res)];
  if (res.error) nodes.push(errorBox(res.error, res.violations, onLine));
  nodes.push(stream("stdout", out.stdout, out.stdout_truncated));
  nodes.push(stream("stderr", out.stderr, out.stderr_truncated));
  if (out.charts && out.charts.length) {
    nodes.push(section("Charts", out.charts.map(chartNode),
      out.charts_truncated ? el("p", { class: "note" }, flag("truncated"), " more charts than shown") : null));
  }
  if (out.dataframes && out.dataframes.length) {
    nodes.push(section("Tables", out.dataframes.map(dataFrameNode),
      out.dataframes_truncated ? el("p", { class: "note" }, flag("truncated"), " more tables than shown") : null));
  }
  if (out.result) {
    // A DataFrame or Series left as the last expression is the table "_"
    // above; its text form would repeat it.
    const asTable = /^(DataFrame|Series)$/.test(out.result.type) &&
      (out.dataframes || []).some((d) => d.name === "_");
    nodes.push(section("Result", el("p", { class: "muted result-type", text: out.result.type + (asTable ? ": the table _ above" : "") }),
      asTable ? null : el("pre", { class: "result" }, el("code", { text: out.result.repr }))));
  }
  nodes.push(variablesNode(out.variables, out.variables_truncated));
  nodes.push(filesNode(out.files, out.files_truncated, out.files_skipped, urls));
  if (out.collect_error) nodes.push(el("p", { class: "note", text: "Some outputs could not be collected: " + out.collect_error }));
  if (res.status === "success" && nodes.filter(Boolean).length === 1) {
    nodes.push(el("p", { class: "muted", text: "No output." }));
  }
  target.replaceChildren(...nodes.filter(Boolean));
  return () => urls.forEach((u) => URL.revokeObjectURL(u));
}

// renderFailure shows an answer that is not a result (429, 503, 422...).
export function renderFailure(target, err) {
  const extra = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : "";
  target.replaceChildren(el("div", { class: "error-box", role: "alert" },
    el("p", { class: "error-head" }, el("strong", { text: err.code || "error" }), ": " + err.message + extra)));
}

// Share links: /#code=<base64url of the UTF-8 code>, /?template=<id>, and
// run=1 to run on load.

export function encodeCode(code) {
  const bytes = new TextEncoder().encode(code);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// decodeCode returns the code, or null when s is not base64url of UTF-8.
export function decodeCode(s) {
  try {
    const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

// readLocation is what the page's URL asks for.
export function readLocation(loc = window.location) {
  const query = new URLSearchParams(loc.search);
  const hash = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const get = (k) => hash.get(k) ?? query.get(k);
  return {
    code: hash.has("code") ? decodeCode(hash.get("code")) : null,
    template: get("template"),
    run: get("run") === "1",
    timeout: get("timeout"),
  };
}

// shareURL links to the code: by template when it is a template's code
// unchanged, else with the code in the fragment (never sent to a server).
export function shareURL({ code, template, timeout, run }, loc = window.location) {
  const base = loc.origin + loc.pathname;
  const params = new URLSearchParams();
  if (timeout) params.set("timeout", timeout);
  if (run) params.set("run", "1");
  if (template) {
    const q = new URLSearchParams({ template });
    for (const [k, v] of params) q.set(k, v);
    return base + "?" + q.toString();
  }
  const extra = params.toString();
  return base + "#code=" + encodeCode(code) + (extra ? "&" + extra : "");
}

// The optional API key the page sends with every call to the API (as
// X-API-Key; see api.js), for a service run with API_KEYS_FILE.
//
// It is kept in sessionStorage, not localStorage: sessionStorage belongs to
// this tab only and is cleared when the tab is closed, so the key survives a
// reload (and share links opened in the same tab) but is not written for
// good into the browser profile, not shared with the other tabs of the
// origin, and not left behind on a shared computer. The key is never put in
// the URL, in the page's text or attributes (the field is a password input
// whose value property is set, never its value attribute), nor in console
// output or error messages.

const storageKey = "pyexec.apiKey";

// get is the key to send, "" when there is none (or storage is off).
export function getKey() {
  try {
    return sessionStorage.getItem(storageKey) || "";
  } catch {
    return ""; // storage disabled: the field still works for this page load
  }
}

// setKey keeps key for this tab; "" forgets it.
export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(storageKey, key);
    else sessionStorage.removeItem(storageKey);
  } catch {
    // storage disabled or full: the key is lost on reload, nothing else
  }
}

// validKey says whether key can be sent in a header: printable ASCII
// without spaces (fetch refuses other characters, and no key has them).
export function validKey(key) {
  return /^[\x21-\x7e]*$/.test(key);
}

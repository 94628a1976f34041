// The code editor: CodeMirror 6 with Python highlighting, line numbers and
// indentation, /validate as you type (lint diagnostics at line and column,
// the message on hover), Ctrl/Cmd+Enter to run, and the line of a run's
// error highlighted until the code changes.

import { basicSetup } from "codemirror";
import { EditorView, Decoration, keymap } from "@codemirror/view";
import { EditorState, StateEffect, StateField, Prec } from "@codemirror/state";
import { indentUnit } from "@codemirror/language";
import { linter, lintGutter } from "@codemirror/lint";
import { python } from "@codemirror/lang-python";

import { api } from "./api.js";

// Debounce of /validate after the last keystroke.
const lintDelayMs = 300;

// offsetOf converts a 1-based line and 1-based column counted in characters
// (code points, as Python counts) into a document offset, clamped to the
// line. Column 0 means unknown: the start of the line's text.
export function offsetOf(doc, line, column) {
  const n = Math.min(Math.max(1, line || 1), doc.lines);
  const l = doc.line(n);
  if (!column || column < 1) {
    const indent = l.text.length - l.text.trimStart().length;
    return l.from + indent;
  }
  let off = 0;
  let chars = 1;
  for (const ch of l.text) {
    if (chars >= column) break;
    off += ch.length;
    chars++;
  }
  return l.from + Math.min(off, l.length);
}

// rangeOf is the span to underline for a problem at (line, column): the
// word that starts there, else one character, else the line's end.
export function rangeOf(doc, line, column) {
  let from = offsetOf(doc, line, column);
  const l = doc.lineAt(from);
  const rest = l.text.slice(from - l.from);
  const word = /^[\w.]+/u.exec(rest);
  let to = from + (word ? word[0].length : Math.min(1, rest.length));
  if (to === from && from > l.from) from--; // at the end of a line: its last character
  if (column === 0 || !column) to = l.to; // position unknown: the whole line
  return { from, to: Math.max(to, from) };
}

async function validateSource(view) {
  const code = view.state.doc.toString();
  if (code.trim() === "") return [];
  let res;
  try {
    res = await api.validate(code);
  } catch (err) {
    return []; // the run itself reports a service that does not answer
  }
  if (view.state.doc.toString() !== code) return []; // stale: another pass follows
  const doc = view.state.doc;
  return (res.errors || []).map((e) => {
    const { from, to } = rangeOf(doc, e.line, e.column);
    return {
      from,
      to,
      severity: "error",
      source: e.rule === "syntax" ? "SyntaxError" : "policy: " + e.rule,
      message: e.message,
    };
  });
}

// The error line of the last run, highlighted until the document changes.
const setErrorLine = StateEffect.define();
const errorLineDeco = Decoration.line({ class: "cm-run-error-line" });
const errorLineField = StateField.define({
  create: () => Decoration.none,
  update(deco, tr) {
    if (tr.docChanged) deco = Decoration.none;
    for (const e of tr.effects) {
      if (e.is(setErrorLine)) {
        deco = e.value == null ? Decoration.none
          : Decoration.set([errorLineDeco.range(tr.state.doc.line(e.value).from)]);
      }
    }
    return deco;
  },
  provide: (f) => EditorView.decorations.from(f),
});

// highlightErrorLine marks line (1-based) as the run's error line, or clears
// the mark when line is null; the line is scrolled into view.
export function highlightErrorLine(view, line) {
  if (line == null || line < 1 || line > view.state.doc.lines) {
    view.dispatch({ effects: setErrorLine.of(null) });
    return;
  }
  const pos = view.state.doc.line(line).from;
  view.dispatch({ effects: [setErrorLine.of(line), EditorView.scrollIntoView(pos, { y: "center" })] });
}

// createEditor makes an editor in parent. onRun is called on Ctrl/Cmd+Enter,
// onShiftRun (optional) on Shift+Enter, onChange on every edit.
export function createEditor(parent, { doc = "", label, onRun, onShiftRun, onChange }) {
  const keys = [{ key: "Mod-Enter", run: () => { onRun(); return true; } }];
  if (onShiftRun) keys.push({ key: "Shift-Enter", run: () => { onShiftRun(); return true; } });
  return new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        Prec.highest(keymap.of(keys)),
        basicSetup,
        python(),
        indentUnit.of("    "),
        EditorState.tabSize.of(4),
        linter(validateSource, { delay: lintDelayMs }),
        lintGutter(),
        errorLineField,
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": label }),
        EditorView.updateListener.of((u) => { if (u.docChanged && onChange) onChange(u); }),
      ],
    }),
  });
}

export function setCode(view, code) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: code } });
}

export function getCode(view) {
  return view.state.doc.toString();
}

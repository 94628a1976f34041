package runner

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// sanitizeOutputs makes the untrusted rich outputs safe to hand to a client
// that renders them: every DataFrame's html is rebuilt by the service from the
// typed cells (escaped), whatever the sandbox sent, and a chart whose data a
// client could not render safely (an SVG with scripts, foreignObject, event
// handlers or external references; a PNG that is not one; an unknown format)
// keeps its place with its data removed and an error saying why. It runs in
// Go after decoding, so it holds whatever the sandbox's policy was, and it
// never panics on malformed shapes.
func sanitizeOutputs(o *Outputs) {
	for i := range o.DataFrames {
		o.DataFrames[i].HTML = frameHTML(&o.DataFrames[i])
	}
	for i := range o.Charts {
		c := &o.Charts[i]
		c.Error = "" // only the service says a chart was refused
		if err := checkChart(c); err != nil {
			c.Data = nil
			c.Error = "chart refused: " + err.Error()
		}
	}
}

// ---------------------------------------------------------------- tables

// htmlCellRunes caps the text of one cell in the html table, as pandas'
// rendering in the sandbox did (the full value stays in data).
const htmlCellRunes = 200

// frameIndex is the index of a DataFrame as the harness describes it.
type frameIndex struct {
	Type   string            `json:"type"`
	Name   json.RawMessage   `json:"name"`
	Names  []json.RawMessage `json:"names"`
	Values []json.RawMessage `json:"values"`
}

// frameHTML builds the table of a DataFrame from its typed fields, in the
// look of pandas' to_html: every label and cell is escaped text, and the only
// markup is table, thead, tbody, tr, th and td. Fields of the wrong shape
// give an empty table.
func frameHTML(df *DataFrame) string {
	var columns []json.RawMessage
	var rows [][]json.RawMessage
	var index frameIndex
	if json.Unmarshal(df.Columns, &columns) != nil {
		columns = nil
	}
	if json.Unmarshal(df.Data, &rows) != nil {
		rows = nil
	}
	if json.Unmarshal(df.Index, &index) != nil {
		index = frameIndex{}
	}
	multi := index.Type == "MultiIndex"
	levels := 1
	if multi && len(index.Names) > 1 {
		levels = len(index.Names)
	}

	var b strings.Builder
	b.WriteString("<table border=\"1\" class=\"dataframe\">\n  <thead>\n")
	writeColumnHeader(&b, columns, levels)
	if names := indexNames(index, levels); names != nil {
		b.WriteString("    <tr>\n")
		for _, n := range names {
			writeCell(&b, "th", n)
		}
		for range columns {
			b.WriteString("      <th></th>\n")
		}
		b.WriteString("    </tr>\n")
	}
	b.WriteString("  </thead>\n  <tbody>\n")
	for i, row := range rows {
		b.WriteString("    <tr>\n")
		var label json.RawMessage
		if i < len(index.Values) {
			label = index.Values[i]
		}
		labels := []json.RawMessage{label}
		if multi {
			if parts, ok := jsonArray(label); ok {
				labels = parts
			}
		}
		for l := range levels {
			var v json.RawMessage
			if l < len(labels) {
				v = labels[l]
			}
			writeCell(&b, "th", cellText(v))
		}
		for _, v := range row {
			writeCell(&b, "td", cellText(v))
		}
		b.WriteString("    </tr>\n")
	}
	b.WriteString("  </tbody>\n</table>")
	return b.String()
}

// writeColumnHeader writes the column labels: one row, or one row per level
// when the labels are arrays (a MultiIndex), with equal neighbours of the
// upper levels merged as pandas does.
func writeColumnHeader(b *strings.Builder, columns []json.RawMessage, indexLevels int) {
	depth := 1
	split := make([][]json.RawMessage, len(columns))
	for j, c := range columns {
		if parts, ok := jsonArray(c); ok && len(parts) > 0 {
			split[j] = parts
			depth = max(depth, len(parts))
		} else {
			split[j] = []json.RawMessage{c}
		}
	}
	if depth > 64 {
		depth = 64 // a label of more levels is not a table anyone reads
	}
	label := func(j, level int) string {
		if parts := split[j]; len(parts) > 1 || depth > 1 {
			if level < len(parts) {
				return cellText(parts[level])
			}
			return ""
		}
		return cellText(split[j][0])
	}
	for level := range depth {
		if level == depth-1 {
			b.WriteString("    <tr style=\"text-align: right;\">\n")
		} else {
			b.WriteString("    <tr>\n")
		}
		for range indexLevels {
			b.WriteString("      <th></th>\n")
		}
		for j := 0; j < len(columns); {
			text := label(j, level)
			span := 1
			if level < depth-1 {
				for j+span < len(columns) && label(j+span, level) == text && samePrefix(label, j, j+span, level) {
					span++
				}
			}
			if span > 1 {
				fmt.Fprintf(b, "      <th colspan=\"%d\" halign=\"left\">%s</th>\n", span, html.EscapeString(text))
			} else {
				writeCell(b, "th", text)
			}
			j += span
		}
		b.WriteString("    </tr>\n")
	}
}

// samePrefix says columns a and b have the same labels above level.
func samePrefix(label func(j, level int) string, a, b, level int) bool {
	for l := range level {
		if label(a, l) != label(b, l) {
			return false
		}
	}
	return true
}

// indexNames is the row of index names, or nil when the index has none.
func indexNames(index frameIndex, levels int) []string {
	names := make([]string, levels)
	any := false
	for l := range levels {
		var v json.RawMessage
		switch {
		case l < len(index.Names):
			v = index.Names[l]
		case l == 0:
			v = index.Name
		}
		names[l] = cellText(v)
		any = any || names[l] != ""
	}
	if !any {
		return nil
	}
	return names
}

func writeCell(b *strings.Builder, tag, text string) {
	b.WriteString("      <")
	b.WriteString(tag)
	b.WriteString(">")
	b.WriteString(html.EscapeString(text))
	b.WriteString("</")
	b.WriteString(tag)
	b.WriteString(">\n")
}

// jsonArray splits a JSON array into its elements.
func jsonArray(v json.RawMessage) ([]json.RawMessage, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '[' {
		return nil, false
	}
	var parts []json.RawMessage
	if json.Unmarshal(v, &parts) != nil {
		return nil, false
	}
	return parts, true
}

// cellText is the text of one JSON value in a table: strings as they are,
// null as nothing, booleans as Python writes them, numbers as written,
// arrays (labels of a MultiIndex) joined by commas; cut to htmlCellRunes.
func cellText(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	var s string
	switch {
	case len(v) == 0 || string(v) == "null":
		return ""
	case string(v) == "true":
		s = "True"
	case string(v) == "false":
		s = "False"
	case v[0] == '"':
		if json.Unmarshal(v, &s) != nil {
			s = ""
		}
	case v[0] == '[':
		parts, _ := jsonArray(v)
		texts := make([]string, 0, len(parts))
		for _, p := range parts {
			texts = append(texts, cellText(p))
		}
		s = strings.Join(texts, ", ")
	default:
		s = string(v) // a number, or an object as compact-enough JSON
	}
	if utf8.RuneCountInString(s) > htmlCellRunes {
		r := []rune(s)
		s = string(r[:htmlCellRunes-3]) + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// ---------------------------------------------------------------- charts

// checkChart says why a chart cannot go to a client as it is, or nil.
func checkChart(c *Chart) error {
	switch c.Format {
	case "png", "svg":
		b64, ok := jsonStringBytes(c.Data)
		if !ok {
			return errors.New("data is not a base64 string")
		}
		raw := make([]byte, base64.StdEncoding.DecodedLen(len(b64)))
		n, err := base64.StdEncoding.Decode(raw, b64)
		if err != nil {
			return errors.New("data is not valid base64")
		}
		raw = raw[:n]
		if c.Format == "png" {
			return checkPNG(raw, c.Width, c.Height)
		}
		return checkSVG(raw)
	case "json":
		if c.Type != "plotly" {
			return fmt.Errorf("format json is only for plotly charts, not %q", c.Type)
		}
		if v := bytes.TrimSpace(c.Data); len(v) == 0 || v[0] != '{' {
			return errors.New("plotly figure is not a JSON object")
		}
		return nil
	default:
		return fmt.Errorf("unknown chart format %q", c.Format)
	}
}

// jsonStringBytes returns the text of the JSON string data, ok false when
// data is not one. A string of printable ASCII without escapes, such as
// base64, is its own text between the quotes: it is returned without a copy
// and without the encoding/json scanner, which reads ~100 MB/s and would
// spend about half a millisecond on a chart's 50 KB once more. Anything else
// goes through json.Unmarshal.
func jsonStringBytes(data json.RawMessage) ([]byte, bool) {
	if n := len(data); n >= 2 && data[0] == '"' && data[n-1] == '"' && plainJSONText(data[1:n-1]) {
		return data[1 : n-1], true
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, false
	}
	return []byte(s), true
}

// PlainData is the chart's data as the text of a JSON string of printable
// ASCII without escapes (an image's base64), ok false for anything else (a
// plotly figure, null). Writers that hold it as a Go string spare
// encoding/json from validating the json.RawMessage once more.
func (c Chart) PlainData() (text string, ok bool) {
	if n := len(c.Data); n >= 2 && c.Data[0] == '"' && c.Data[n-1] == '"' && plainJSONText(c.Data[1:n-1]) {
		return string(c.Data[1 : n-1]), true
	}
	return "", false
}

// plainJSONText says b is printable ASCII without '"' or '\\': inside
// quotes, a JSON string that means exactly b.
func plainJSONText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// checkPNG checks the PNG signature and that the header's size is the
// chart's width and height (when they are given).
func checkPNG(raw []byte, width, height int) error {
	if len(raw) < 24 || !bytes.HasPrefix(raw, pngSignature) || string(raw[12:16]) != "IHDR" {
		return errors.New("data is not a PNG image")
	}
	w, h := binary.BigEndian.Uint32(raw[16:20]), binary.BigEndian.Uint32(raw[20:24])
	if (width != 0 && int64(w) != int64(width)) || (height != 0 && int64(h) != int64(height)) {
		return fmt.Errorf("PNG is %dx%d, not the %dx%d the chart says", w, h, width, height)
	}
	return nil
}

// svgMaxDepth bounds the nesting of SVG elements.
const svgMaxDepth = 256

// svgElements are the SVG elements a chart may use (lower case, since an
// HTML parser that inlines the SVG ignores case): shapes, text, grouping,
// paint servers and clipping, as matplotlib and other plotting libraries
// write them. No scripts, foreignObject, animation, links or embedding.
var svgElements = map[string]bool{
	"svg": true, "g": true, "defs": true, "style": true, "symbol": true, "use": true,
	"path": true, "rect": true, "circle": true, "ellipse": true, "line": true,
	"polyline": true, "polygon": true, "text": true, "tspan": true, "title": true,
	"desc": true, "metadata": true, "clippath": true, "mask": true, "pattern": true,
	"lineargradient": true, "radialgradient": true, "stop": true, "image": true,
	"marker": true,
}

// svgDenied are attributes that load or navigate to something whatever
// their value (href and src are checked apart).
var svgDenied = map[string]bool{
	"action": true, "formaction": true, "base": true, "background": true,
	"dynsrc": true, "lowsrc": true, "poster": true, "codebase": true, "ping": true,
	"attributename": true, "srcset": true,
}

const nsXHTML = "http://www.w3.org/1999/xhtml"

// checkSVG says why an SVG document cannot be shown safely, or nil: it must
// be well-formed UTF-8 XML with one svg root, elements from svgElements
// (inside metadata also prefixed elements of other vocabularies, such as
// RDF), no event-handler attributes, and no reference outside the document
// except PNG, JPEG and GIF images inlined as data: URIs. Names are compared
// without regard to case or namespace, so the verdict holds for a client
// that parses the SVG as HTML (inlined) as well as one that parses it as XML.
func checkSVG(raw []byte) error {
	if !utf8.Valid(raw) {
		return errors.New("SVG is not valid UTF-8")
	}
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.Strict = true
	type open struct {
		raw  xml.Name // as written, to match the end tag
		name string   // lower-case local name
	}
	var stack []open
	inMetadata := 0 // depth of the outermost open metadata element, 0 if none
	roots := 0
	var style strings.Builder // the text of the open style element
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("SVG is not well-formed XML: %v", err)
		}
		inStyle := len(stack) > 0 && stack[len(stack)-1].name == "style"
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" || len(stack) > 0 || roots > 0 {
				return fmt.Errorf("SVG carries a processing instruction <?%s?>", t.Target)
			}
		case xml.Directive:
			if len(stack) > 0 || roots > 0 || !bytes.HasPrefix(t, []byte("DOCTYPE")) || bytes.ContainsAny(t, "[<>%&") {
				return errors.New("SVG carries a directive other than a plain DOCTYPE")
			}
		case xml.StartElement:
			if inStyle {
				return errors.New("SVG carries an element inside <style>")
			}
			if len(stack) == 0 {
				roots++
				if roots > 1 {
					return errors.New("SVG has more than one root element")
				}
			}
			if len(stack) >= svgMaxDepth {
				return errors.New("SVG elements are nested too deep")
			}
			name := strings.ToLower(t.Name.Local)
			if len(stack) == 0 && name != "svg" {
				return fmt.Errorf("SVG root element is <%s>, not <svg>", t.Name.Local)
			}
			if !svgElements[name] {
				prefix := strings.ToLower(t.Name.Space)
				foreign := prefix != "" && prefix != "svg" && prefix != "xhtml" && prefix != "html"
				if name == "script" || name == "foreignobject" || inMetadata == 0 || !foreign {
					return fmt.Errorf("SVG carries a <%s> element", t.Name.Local)
				}
			}
			if err := checkSVGAttrs(name, t.Attr); err != nil {
				return err
			}
			stack = append(stack, open{raw: t.Name, name: name})
			if name == "metadata" && inMetadata == 0 {
				inMetadata = len(stack)
			}
			if name == "style" {
				style.Reset()
			}
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].raw != t.Name {
				return errors.New("SVG is not well-formed XML: mismatched end tag")
			}
			if inStyle {
				if err := checkCSS(style.String()); err != nil {
					return err
				}
			}
			if len(stack) == inMetadata {
				inMetadata = 0
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			switch {
			case len(stack) == 0:
				if len(bytes.TrimSpace(t)) > 0 {
					return errors.New("SVG has text outside its root element")
				}
			case inStyle:
				// Checked whole at the end tag: a comment or CDATA section
				// can split a word that the browser joins again.
				style.Write(t)
			}
		case xml.Comment:
			// Inert in XML and in HTML alike (the strict decoder refuses
			// "--" inside one).
		}
	}
	if roots != 1 || len(stack) != 0 {
		return errors.New("SVG has no complete <svg> root element")
	}
	return nil
}

// checkSVGAttrs checks the attributes of one element.
func checkSVGAttrs(element string, attrs []xml.Attr) error {
	for _, a := range attrs {
		name := strings.ToLower(a.Name.Local)
		space := strings.ToLower(a.Name.Space)
		if space == "xmlns" || (space == "" && name == "xmlns") {
			// Namespace declarations; XHTML would make its elements live.
			if strings.TrimSpace(a.Value) == nsXHTML {
				return fmt.Errorf("SVG declares the XHTML namespace on <%s>", element)
			}
			continue
		}
		switch {
		case strings.HasPrefix(name, "on"):
			return fmt.Errorf("SVG carries an event-handler attribute %s on <%s>", a.Name.Local, element)
		case name == "href" || name == "src":
			if err := checkRef(element, a.Value); err != nil {
				return err
			}
		case svgDenied[name]:
			return fmt.Errorf("SVG carries a %s attribute on <%s>", a.Name.Local, element)
		case name == "style":
			if err := checkCSS(a.Value); err != nil {
				return err
			}
		default:
			if err := checkURLs(a.Value); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkRef allows references into the document (#id) and, on <image>, PNG,
// JPEG and GIF images inlined as base64 data: URIs.
func checkRef(element, value string) error {
	v := strings.TrimSpace(value)
	if strings.HasPrefix(v, "#") {
		return nil
	}
	if element == "image" {
		lower := strings.ToLower(v)
		for _, mime := range []string{"image/png", "image/jpeg", "image/gif"} {
			if strings.HasPrefix(lower, "data:"+mime+";base64,") {
				return nil
			}
		}
	}
	return fmt.Errorf("SVG carries an external reference on <%s>: %.60q", element, value)
}

// checkCSS checks a style sheet or style attribute: no at-rules, escapes or
// functions that load or run anything, and url() only into the document.
func checkCSS(css string) error {
	lower := strings.ToLower(css)
	if strings.ContainsAny(lower, "\\@") {
		return errors.New("SVG style carries escapes or at-rules")
	}
	for _, bad := range []string{"expression(", "javascript:", "image-set(", "image(", "cross-fade(", "element(", "src(", "behavior", "-moz-binding"} {
		if strings.Contains(lower, bad) {
			return fmt.Errorf("SVG style carries %q", bad)
		}
	}
	return checkURLs(css)
}

// checkURLs allows url() only with a reference into the document, url(#id).
func checkURLs(value string) error {
	lower := strings.ToLower(value)
	for {
		i := strings.Index(lower, "url(")
		if i < 0 {
			return nil
		}
		rest := strings.TrimLeft(lower[i+4:], " \t\r\n\f\"'")
		if !strings.HasPrefix(rest, "#") {
			end := min(len(value), i+64)
			return fmt.Errorf("SVG carries an external reference %s", strconv.Quote(value[i:end]))
		}
		lower = lower[i+4:]
		value = value[i+4:]
	}
}

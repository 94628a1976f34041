package runner

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// tableTags matches every tag of an HTML fragment.
var tableTags = regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>`)

// assertOnlyTableMarkup fails unless html is made only of table elements
// with the attributes frameHTML writes, and text without markup.
func assertOnlyTableMarkup(t *testing.T, html string) {
	t.Helper()
	allowed := map[string]bool{"table": true, "thead": true, "tbody": true, "tr": true, "th": true, "td": true}
	attrs := regexp.MustCompile(`^(\s+(border="1"|class="dataframe"|style="text-align: right;"|colspan="\d+"|halign="left"))*$`)
	for _, m := range tableTags.FindAllStringSubmatch(html, -1) {
		if !allowed[m[2]] || !attrs.MatchString(m[3]) {
			t.Errorf("markup %q in the table", m[0])
		}
	}
	text := tableTags.ReplaceAllString(html, "")
	if strings.ContainsAny(text, "<>") {
		t.Errorf("unescaped markup left in the text: %q", text)
	}
}

func TestSanitizeFrameHTML(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		columns, index, data string
		want                 []string // in this order
		not                  []string
	}{
		{
			name:    "range index",
			columns: `["city","temp_c"]`,
			index:   `{"type":"RangeIndex","name":null,"names":[null],"values":[0,1]}`,
			data:    `[["Oslo",4.5],["Lima",null]]`,
			want: []string{`<table border="1" class="dataframe">`, "<thead>", `<tr style="text-align: right;">`,
				"<th></th>", "<th>city</th>", "<th>temp_c</th>", "<tbody>", "<th>0</th>", "<td>Oslo</td>",
				"<td>4.5</td>", "<th>1</th>", "<td>Lima</td>", "<td></td>", "</tbody>", "</table>"},
		},
		{
			name:    "markup is escaped",
			columns: `["<b>c</b>"]`,
			index:   `{"type":"Index","name":"<i>n</i>","names":["<i>n</i>"],"values":["<script>x</script>"]}`,
			data:    `[["<img src=x onerror=alert(1)>"]]`,
			want: []string{"<th>&lt;b&gt;c&lt;/b&gt;</th>", "<th>&lt;i&gt;n&lt;/i&gt;</th>",
				"<th>&lt;script&gt;x&lt;/script&gt;</th>", "<td>&lt;img src=x onerror=alert(1)&gt;</td>"},
			not: []string{"<img", "<script", "<b>"},
		},
		{
			name:    "multi index rows and columns",
			columns: `[["A","x"],["A","y"],["B","x"]]`,
			index:   `{"type":"MultiIndex","name":null,"names":["k1","k2"],"values":[["a",1],["b",2]]}`,
			data:    `[[1,2,3],[4,5,true]]`,
			want: []string{"<th></th>\n      <th></th>\n      <th colspan=\"2\" halign=\"left\">A</th>", "<th>B</th>",
				`<tr style="text-align: right;">`, "<th>x</th>", "<th>y</th>", "<th>x</th>",
				"<th>k1</th>", "<th>k2</th>", "<th>a</th>\n      <th>1</th>", "<td>True</td>"},
		},
		{
			name:    "long cell is cut",
			columns: `["c"]`,
			index:   `{"type":"RangeIndex","values":[0]}`,
			data:    `[["` + strings.Repeat("é", 500) + `"]]`,
			want:    []string{"<td>" + strings.Repeat("é", 197) + "...</td>"},
		},
		{
			name:    "malformed shapes give an empty table",
			columns: `{"not":"a list"}`,
			index:   `"nope"`,
			data:    `[1, 2, "x"]`,
			want:    []string{`<table border="1" class="dataframe">`, "<tbody>\n  </tbody>\n</table>"},
		},
		{
			name:    "nothing at all",
			columns: ``,
			index:   ``,
			data:    ``,
			want:    []string{"<thead>", "</table>"},
		},
		{
			name:    "ragged rows and short index",
			columns: `["a","b"]`,
			index:   `{"type":"MultiIndex","names":["x","y"],"values":[["only"]]}`,
			data:    `[[1],[1,2,3],[]]`,
			want:    []string{"<th>only</th>\n      <th></th>", "<td>3</td>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			df := DataFrame{Columns: json.RawMessage(tc.columns), Index: json.RawMessage(tc.index),
				Data: json.RawMessage(tc.data), HTML: "<script>alert(1)</script>"}
			got := frameHTML(&df)
			assertOnlyTableMarkup(t, got)
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("%q missing (or out of order) in\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("%q in\n%s", n, got)
				}
			}
		})
	}
}

// A real-size table is built fast and whatever the sandbox put in html is gone.
func TestSanitizeOutputsReplacesHTML(t *testing.T) {
	t.Parallel()
	rows := make([][]any, 100)
	for i := range rows {
		rows[i] = []any{i, "<x>", nil, 1.5}
	}
	data, _ := json.Marshal(rows)
	o := Outputs{DataFrames: []DataFrame{{Columns: json.RawMessage(`["a","b","c","d"]`),
		Index: json.RawMessage(`{"type":"RangeIndex","values":[]}`), Data: data, HTML: "<b>mine</b>"}}}
	sanitizeOutputs(&o)
	h := o.DataFrames[0].HTML
	assertOnlyTableMarkup(t, h)
	if strings.Count(h, "<tr>") != 100 || strings.Count(h, "&lt;x&gt;") != 100 || strings.Contains(h, "mine") {
		t.Errorf("table has %d rows, %d escaped cells:\n%.300s", strings.Count(h, "<tr>"), strings.Count(h, "&lt;x&gt;"), h)
	}
}

const svgHead = `<?xml version="1.0" encoding="utf-8" standalone="no"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"
  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="460pt" height="345pt" viewBox="0 0 460 345" xmlns="http://www.w3.org/2000/svg" version="1.1">
 <metadata>
  <rdf:RDF xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://creativecommons.org/ns#" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
   <cc:Work><dc:type rdf:resource="http://purl.org/dc/dcmitype/StillImage"/><dc:format>image/svg+xml</dc:format></cc:Work>
  </rdf:RDF>
 </metadata>
 <defs>
  <style type="text/css">*{stroke-linejoin: round; stroke-linecap: butt}</style>
 </defs>
`

func TestSanitizeSVG(t *testing.T) {
	t.Parallel()
	ok := func(body string) string { return svgHead + body + "\n</svg>\n" }
	for _, tc := range []struct {
		name, svg string
		refused   string // part of the error; "" when the SVG passes
	}{
		{"matplotlib shapes", ok(`<g id="figure_1"><defs><path id="m1" d="M 0 0 L 0 3.5" style="stroke: #000000"/><clipPath id="p1"><rect x="57" y="41" width="357" height="266"/></clipPath></defs>
<use xlink:href="#m1" x="1" y="2"/><path d="M 1 2" clip-path="url(#p1)" style="fill: url(#h1); stroke: #1f77b4"/>
<text x="1" y="2" style="font: 12px 'DejaVu Sans'">销售额趋势 時間 한국어 &lt;script&gt;</text></g>`), ""},
		{"inline PNG image", ok(`<image xlink:href="data:image/png;base64,iVBORw0KGgo=" width="1" height="1"/>`), ""},
		{"comment", ok(`<!-- a note -->`), ""},
		{"script", ok(`<script>alert(1)</script>`), "<script>"},
		{"script upper case", ok(`<SCRIPT>alert(1)</SCRIPT>`), "<SCRIPT>"},
		{"prefixed script", ok(`<svg:script xmlns:svg="http://www.w3.org/2000/svg">alert(1)</svg:script>`), "<script>"},
		{"script in metadata", ok(`<metadata><x:script xmlns:x="urn:x">alert(1)</x:script></metadata>`), "<script>"},
		{"foreignObject", ok(`<foreignObject width="9" height="9"><div>hi</div></foreignObject>`), "<foreignObject>"},
		{"onload", ok(`<g onload="alert(1)"/>`), "event-handler attribute onload"},
		{"onclick on root", `<svg xmlns="http://www.w3.org/2000/svg" onclick="x()"></svg>`, "event-handler"},
		{"external use", ok(`<use xlink:href="http://evil/x.svg#a"/>`), "external reference"},
		{"javascript link", ok(`<use href="javascript:alert(1)"/>`), "external reference"},
		{"external image", ok(`<image href="https://evil/x.png"/>`), "external reference"},
		{"svg data image", ok(`<image href="data:image/svg+xml;base64,PHN2Zz4="/>`), "external reference"},
		{"anchor", ok(`<a href="#x"><text>t</text></a>`), "<a>"},
		{"animation", ok(`<set attributeName="href" to="javascript:alert(1)"/>`), "<set>"},
		{"external url in attribute", ok(`<path d="M0 0" fill="url(http://evil/p)"/>`), "external reference"},
		{"external url in style", ok(`<path d="M0 0" style="fill: url( 'https://evil/p' )"/>`), "external reference"},
		{"import in style sheet", ok(`<style>@import "https://evil/x.css";</style>`), "at-rules"},
		{"css escape", ok(`<style>*{fill:\75rl(https://evil)}</style>`), "escapes"},
		{"style split by comment", ok(`<style>*{fill:ur<!-- -->l(https://evil/)}</style>`), "external reference"},
		{"element in style", ok(`<style><g/></style>`), "inside <style>"},
		{"xml-stylesheet", `<?xml version="1.0"?><?xml-stylesheet href="https://evil/x.xsl" type="text/xsl"?><svg xmlns="http://www.w3.org/2000/svg"/>`, "processing instruction"},
		{"entity declarations", `<!DOCTYPE svg [<!ENTITY x "<script>alert(1)</script>">]><svg xmlns="http://www.w3.org/2000/svg">&x;</svg>`, "directive"},
		{"undeclared entity", `<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>`, "well-formed"},
		{"xhtml namespace", `<svg xmlns="http://www.w3.org/1999/xhtml"><style>b{}</style></svg>`, "XHTML"},
		{"xml:base", ok(`<g xml:base="https://evil/"/>`), "base attribute"},
		{"two roots", `<svg xmlns="http://www.w3.org/2000/svg"></svg><svg xmlns="http://www.w3.org/2000/svg"></svg>`, "more than one root"},
		{"html root", `<html><body>x</body></html>`, "root element is <html>"},
		{"not xml", `<svg><g></svg>`, "well-formed"},
		{"unclosed", `<svg xmlns="http://www.w3.org/2000/svg"><g>`, "no complete"},
		{"text after root", `<svg xmlns="http://www.w3.org/2000/svg"/><img src=x onerror=alert(1)>`, ""},
		{"empty", ``, "no complete"},
		{"utf-16", "\xff\xfe<\x00s\x00", "UTF-8"},
		{"deep", `<svg xmlns="http://www.w3.org/2000/svg">` + strings.Repeat("<g>", 300) + strings.Repeat("</g>", 300) + `</svg>`, "too deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkSVG([]byte(tc.svg))
			switch {
			case tc.name == "text after root":
				if err == nil {
					t.Errorf("markup after the root passed")
				}
			case tc.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
				t.Errorf("error %v, want one saying %q", err, tc.refused)
			}
		})
	}
}

func pngBytes(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint32(b, h)
	return append(b, 8, 6, 0, 0, 0)
}

func b64JSON(b []byte) json.RawMessage {
	data, _ := json.Marshal(base64.StdEncoding.EncodeToString(b))
	return data
}

func TestSanitizeCharts(t *testing.T) {
	t.Parallel()
	svgScript := []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)
	for _, tc := range []struct {
		name    string
		chart   Chart
		refused string
	}{
		{"png", Chart{Type: "matplotlib", Format: "png", Data: b64JSON(pngBytes(640, 480)), Width: 640, Height: 480}, ""},
		{"png size differs", Chart{Type: "matplotlib", Format: "png", Data: b64JSON(pngBytes(640, 480)), Width: 64, Height: 480}, "640x480"},
		{"png not a png", Chart{Type: "matplotlib", Format: "png", Data: b64JSON([]byte("<html>"))}, "not a PNG"},
		{"png not base64", Chart{Type: "matplotlib", Format: "png", Data: json.RawMessage(`"\"><script>"`)}, "base64"},
		{"png not a string", Chart{Type: "matplotlib", Format: "png", Data: json.RawMessage(`{"a":1}`)}, "base64 string"},
		{"svg script", Chart{Type: "matplotlib", Format: "svg", Data: b64JSON(svgScript)}, "<script>"},
		{"svg fine", Chart{Type: "matplotlib", Format: "svg", Data: b64JSON([]byte(`<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0"/></svg>`))}, ""},
		{"plotly", Chart{Type: "plotly", Format: "json", Data: json.RawMessage(`{"data":[],"layout":{}}`)}, ""},
		{"plotly not an object", Chart{Type: "plotly", Format: "json", Data: json.RawMessage(`"<script>"`)}, "JSON object"},
		{"json for matplotlib", Chart{Type: "matplotlib", Format: "json", Data: json.RawMessage(`{}`)}, "only for plotly"},
		{"html format", Chart{Type: "matplotlib", Format: "html", Data: json.RawMessage(`"<script>"`)}, "unknown chart format"},
		{"forged error", Chart{Type: "plotly", Format: "json", Data: json.RawMessage(`{}`), Error: "chart refused: forged"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := Outputs{Charts: []Chart{tc.chart}}
			sanitizeOutputs(&o)
			c := o.Charts[0]
			if tc.refused == "" {
				if c.Error != "" || c.Data == nil {
					t.Errorf("refused: %q", c.Error)
				}
				return
			}
			if c.Data != nil || !strings.HasPrefix(c.Error, "chart refused: ") || !strings.Contains(c.Error, tc.refused) {
				t.Errorf("data %.40s error %q, want no data and an error saying %q", c.Data, c.Error, tc.refused)
			}
			if out, _ := json.Marshal(c); strings.Contains(string(out), "script>") {
				t.Errorf("markup in the answer: %s", out)
			}
		})
	}
}

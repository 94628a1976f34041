package runner

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
)

// referenceChartData is what checkChart decoded before jsonStringBytes: the
// JSON string through json.Unmarshal, then base64.
func referenceChartData(data json.RawMessage) ([]byte, string) {
	var s string
	if json.Unmarshal(data, &s) != nil {
		return nil, "data is not a base64 string"
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, "data is not valid base64"
	}
	return raw, ""
}

// tinyPNG is a PNG header of w x h (enough for checkPNG).
func tinyPNG(w, h uint32) []byte {
	b := append([]byte{}, pngSignature...)
	b = append(b, 0, 0, 0, 13)
	b = append(b, "IHDR"...)
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint32(b, h)
	return append(b, 8, 6, 0, 0, 0, 1, 2, 3, 4)
}

// TestChartDataFastPath: checkChart gives every chart the verdict of the
// reference decoding, whether its string takes the no-copy path or not.
func TestChartDataFastPath(t *testing.T) {
	png := base64.StdEncoding.EncodeToString(tinyPNG(640, 480))
	svg := base64.StdEncoding.EncodeToString([]byte(`<svg xmlns="http://www.w3.org/2000/svg"><text>销售</text></svg>`))
	cases := []string{
		`"` + png + `"`,
		`"` + strings.ReplaceAll(png, "/", `\/`) + `"`, // escaped solidus: the slow path
		`"` + png[:8] + `\u0041` + png[9:] + `"`,       // an escape that changes a character
		`"` + png[:20] + "\n" + png[20:] + `"`,         // a raw newline: not JSON, though base64 skips newlines
		`"` + png[:20] + `\n` + png[20:] + `"`,         // an escaped newline: base64 skips it
		`"` + png[:20] + "é" + png[20:] + `"`,
		`"` + png[:20] + `"` + png[20:] + `"`,
		`"` + png + `=="`,
		`"` + png[:len(png)-1] + `"`,
		`""`, `"`, `12`, `null`, `["x"]`, `"\"`,
		`"` + svg + `"`,
	}
	for _, data := range cases {
		for _, format := range []string{"png", "svg"} {
			c := Chart{Type: "matplotlib", Format: format, Data: json.RawMessage(data), Width: 640, Height: 480}
			got := checkChart(&c)
			raw, wantMsg := referenceChartData(c.Data)
			if wantMsg == "" {
				if format == "png" {
					if err := checkPNG(raw, 640, 480); err != nil {
						wantMsg = err.Error()
					}
				} else if err := checkSVG(raw); err != nil {
					wantMsg = err.Error()
				}
			}
			gotMsg := ""
			if got != nil {
				gotMsg = got.Error()
			}
			if gotMsg != wantMsg {
				t.Errorf("%s %.40q: %q, want %q", format, data, gotMsg, wantMsg)
			}
		}
	}
	if err := checkChart(&Chart{Format: "png", Data: json.RawMessage(`"` + png + `"`), Width: 640, Height: 480}); err != nil {
		t.Errorf("a valid PNG was refused: %v", err)
	}
	if b, ok := jsonStringBytes(json.RawMessage(`"` + png + `"`)); !ok || !bytes.Equal(b, []byte(png)) {
		t.Errorf("jsonStringBytes: %q, %v", b, ok)
	}
}

// BenchmarkCheckChartPNG is a 1000x600 chart's worth of base64 (~50 KB).
func BenchmarkCheckChartPNG(b *testing.B) {
	img := append(tinyPNG(1000, 600), bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, 12000)...)
	c := Chart{Format: "png", Width: 1000, Height: 600, Data: json.RawMessage(`"` + base64.StdEncoding.EncodeToString(img) + `"`)}
	b.SetBytes(int64(len(c.Data)))
	for b.Loop() {
		if err := checkChart(&c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckChartPNGReference decodes the same chart the way checkChart
// did before jsonStringBytes, for comparison in the same run.
func BenchmarkCheckChartPNGReference(b *testing.B) {
	img := append(tinyPNG(1000, 600), bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, 12000)...)
	data := json.RawMessage(`"` + base64.StdEncoding.EncodeToString(img) + `"`)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		raw, msg := referenceChartData(data)
		if msg != "" || checkPNG(raw, 1000, 600) != nil {
			b.Fatal(msg)
		}
	}
}

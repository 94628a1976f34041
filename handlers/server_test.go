package handlers

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestSlowClientIsCutOff: a client that trickles its headers (slow-loris)
// is disconnected by the server's header timeout, and the server keeps
// answering others meanwhile.
func TestSlowClientIsCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the real header timeout")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), newTestRouter(&fakeRunner{}), newTestMaxTimeout)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	// One header byte a second, never finishing.
	go func() {
		for _, b := range []byte("POST /execute HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(time.Second)
		}
	}()

	// Meanwhile a normal client is served.
	resp, err := http.Get("http://" + ln.Addr().String() + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("normal client got %d", resp.StatusCode)
	}

	_ = conn.SetReadDeadline(time.Now().Add(readHeaderTimeout + 10*time.Second))
	_, err = io.ReadAll(bufio.NewReader(conn))
	elapsed := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("server kept the slow connection open for %v", elapsed)
	}
	if elapsed > readHeaderTimeout+5*time.Second {
		t.Errorf("slow client cut off after %v, want about %v", elapsed, readHeaderTimeout)
	}
}

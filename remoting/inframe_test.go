package remoting

import (
	"io"
	"testing"
	"time"
)

// TestReaderInFrame: InFrame is false while the stream is idle between frames and true once part of a frame has
// arrived, until Read returns it.
func TestReaderInFrame(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	r := NewReader(pr, 0)
	frame, err := Encode(&Command{Code: 105, Remark: "in frame", Body: []byte("body")})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		cmd *Command
		err error
	}
	done := make(chan result, 1)
	go func() {
		cmd, err := r.Read()
		done <- result{cmd, err}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 5s: %s", what)
			}
		}
	}
	time.Sleep(20 * time.Millisecond) // Read is waiting for a first byte
	if r.InFrame() {
		t.Fatal("InFrame while idle between frames")
	}
	pw.Write(frame[:6]) // the length prefix and two bytes more
	waitFor("InFrame after part of a frame", r.InFrame)
	pw.Write(frame[6:])
	res := <-done
	if res.err != nil || res.cmd.Remark != "in frame" || string(res.cmd.Body) != "body" {
		t.Fatalf("Read: %+v, %v", res.cmd, res.err)
	}
	if r.InFrame() {
		t.Fatal("InFrame after Read returned the frame")
	}
	// A clean end between frames is io.EOF, as before.
	pw.Close()
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("Read at a clean end: %v, want io.EOF", err)
	}
}

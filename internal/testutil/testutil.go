// Package testutil holds the helpers every package's tests share: waiting for a condition, a log buffer a logger
// may write to from any goroutine, and a remoting request's frame. Only tests import it.
package testutil

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Eventually polls cond until it holds, and fails tb once within has passed, with what cond last reported. It
// polls often for short waits (every within/200) and at most every 50 ms, so that a wait on an API server does
// not hammer it.
func Eventually(tb testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	interval := min(max(within/200, 2*time.Millisecond), 50*time.Millisecond)
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if why != "" {
				tb.Fatalf("%s: not within %v (last: %s)", what, within, why)
			}
			tb.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(interval)
	}
}

// EventuallyTrue is Eventually for a condition with nothing to report.
func EventuallyTrue(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, within, what, func() (bool, string) { return cond(), "" })
}

// LogBuffer collects what a logger writes, from any goroutine.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Frame encodes a remoting request, as a test's client writes it.
func Frame(tb testing.TB, code int32, ext map[string]string, body []byte) []byte {
	tb.Helper()
	req := remoting.NewRequest(code, ext)
	req.Body = body
	b, err := remoting.Encode(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

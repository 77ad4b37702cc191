package testutil

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a testing.TB that records a failure instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func run(within time.Duration, cond func() (bool, string)) (failed string) {
	r := &recorder{}
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
		failed = r.failed
	}()
	Eventually(r, within, "the thing", cond)
	return ""
}

func TestEventuallyWaitsAndFailsWithTheLastReason(t *testing.T) {
	n := 0
	if failed := run(time.Second, func() (bool, string) { n++; return n == 3, "" }); failed != "" || n != 3 {
		t.Fatalf("a condition true on the third poll: failed %q after %d polls", failed, n)
	}
	start := time.Now()
	failed := run(50*time.Millisecond, func() (bool, string) { return false, "still 7" })
	if !strings.Contains(failed, "the thing: not within 50ms (last: still 7)") || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("failed %q after %v", failed, time.Since(start))
	}
}

func TestLogBufferTakesConcurrentWrites(t *testing.T) {
	var b LogBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprint(&b, "x")
			}
		})
	}
	wg.Wait()
	if got := len(b.String()); got != 800 {
		t.Fatalf("%d bytes, want 800", got)
	}
}

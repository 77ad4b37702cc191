// Package leakcheck ends a test binary with two checks after its tests pass: no goroutine of the tests is still
// running (go.uber.org/goleak, which retries while goroutines wind down), and the live heap has not grown by more
// than a bound since the tests started (a cache, stream or watcher the tests dropped but something still holds).
// Every test package's TestMain calls Main.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

// HeapLimit is the live heap a test binary may keep after its tests, beyond what it had before them.
const HeapLimit = 64 << 20

// background are goroutines libraries start once per process and never stop: klog's flush daemon starts when
// the package is initialised (client-go imports it).
var background = []goleak.Option{
	goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
}

// Main runs the tests, then the leak checks when they passed, and exits.
func Main(m *testing.M, opts ...goleak.Option) { MainAfter(m, nil, opts...) }

// MainAfter is Main for a package with shared fixtures: cleanup (when not nil) stops them after the tests and
// before the checks.
func MainAfter(m *testing.M, cleanup func(), opts ...goleak.Option) {
	before := liveHeap()
	code := m.Run()
	if cleanup != nil {
		cleanup()
	}
	if code == 0 {
		code = check(before, opts)
	}
	os.Exit(code)
}

func check(before uint64, opts []goleak.Option) int {
	if err := goleak.Find(append(background, opts...)...); err != nil {
		fmt.Fprintf(os.Stderr, "leakcheck: goroutines still running after the tests:\n%v\n", err)
		return 1
	}
	after := liveHeap()
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "leakcheck: live heap %d KiB before the tests, %d KiB after\n", before>>10, after>>10)
	}
	if after > before && after-before > HeapLimit {
		fmt.Fprintf(os.Stderr, "leakcheck: the live heap grew by %d MiB over the tests (limit %d MiB)\n", (after-before)>>20, HeapLimit>>20)
		return 1
	}
	return 0
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // the first may leave objects whose finalizers ran
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

package interop

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/rlog"
	"go.uber.org/goleak"

	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

func TestMain(m *testing.M) {
	// rocketmq-client-go logs through logrus to stdout at info level. Keep its errors in memory instead, so that
	// a failing test can show them (see clientErrors) and a passing one stays quiet. Set before any client
	// goroutine starts: rlog's logger variable is not synchronized.
	rlog.SetLogger(clientLog)
	// The RocketMQ Go client's background loops (route and heartbeat timers under primitive.WithRecover) sleep
	// out their period after Shutdown; they are its own, not ours. So does a push consumer's pull in flight: a
	// long-polling pull waits for its answer until its own timeout, even after Shutdown closed the connection
	// (ResponseFuture.waitResponse watches only its context). For the same reason a push consumer shut down right
	// after Start leaves the rebalance Start kicked off waiting for the rebalance lock a request in flight holds.
	leakcheck.Main(m, goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/primitive.WithRecover"),
		goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/consumer.(*pushConsumer).pullMessage"),
		goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/internal.(*rmqClient).RebalanceImmediately"),
		goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run")) // its package-level caches
}

// quietLogger is an rlog.Logger that drops debug, info and warning messages and keeps the last errors.
type quietLogger struct {
	mu     sync.Mutex
	errors []string // the last keepErrors errors
	total  int      // errors logged since the start
}

var clientLog = &quietLogger{}

const keepErrors = 200

func (l *quietLogger) record(level, msg string, fields map[string]interface{}) {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", level, msg)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, fields[k])
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) == keepErrors {
		l.errors = append(l.errors[:0], l.errors[1:]...)
	}
	l.errors = append(l.errors, b.String())
	l.total++
}

func (l *quietLogger) Debug(string, map[string]interface{})   {}
func (l *quietLogger) Info(string, map[string]interface{})    {}
func (l *quietLogger) Warning(string, map[string]interface{}) {}
func (l *quietLogger) Error(msg string, fields map[string]interface{}) {
	l.record("error", msg, fields)
}
func (l *quietLogger) Fatal(msg string, fields map[string]interface{}) {
	l.record("fatal", msg, fields)
}
func (l *quietLogger) Level(string)            {}
func (l *quietLogger) OutputPath(string) error { return nil }

// mark returns the number of errors logged so far.
func (l *quietLogger) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// since returns the errors logged after mark returned n that are still kept.
func (l *quietLogger) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.total - len(l.errors) // sequence number of l.errors[0]
	return append([]string(nil), l.errors[max(n-first, 0):]...)
}

// clientErrors makes t print, if it fails, the errors rocketmq-client-go logged while it ran.
func clientErrors(t *testing.T) {
	t.Helper()
	start := clientLog.mark()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, line := range clientLog.since(start) {
			t.Logf("rocketmq-client-go %s", line)
		}
	})
}

// startNameServer starts an embedded NameServer on a loopback port, with the demo data set when demo is true,
// and closes it when the test ends.
func startNameServer(t testing.TB, opts embedded.Options, demo bool) *embedded.NameServer {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ns := embedded.New(opts)
	if demo {
		embedded.LoadDemo(ns)
	}
	if err := ns.Start(); err != nil {
		t.Fatalf("start embedded NameServer: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

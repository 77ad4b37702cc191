package watcher

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/rocketpilot/rocketpilot/internal/faultnet"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/routing"
)

// The NameServer fault suite: each test breaks one thing between the watcher and real embedded NameServers over
// loopback (a faultnet proxy where the fault is on the wire) and checks what the watcher promises: the last good
// routes stay (the very same topics, not merely some), no topic is withdrawn because a poll failed, the status and
// the metrics say what happened, and routes follow again once the fault ends. Faults other tests already cover:
// an outage after sync (TestOutageKeepsLastGoodRoutes), corrupt frames from the NameServer itself
// (TestMalformedFrameClosesOneConnectionAndRecovers, TestMalformedFrameClosesOnlyThatConnection), one NameServer
// failing while the other says 17 (TestFailedPollKeepsThatNameServersView), two NameServers listing different
// broker groups for a topic (TestTwoNameServersMerge), a restarted, empty NameServer
// (TestRestartedNameServerKeepsRoutes).

// watched are the topics of demoLike whose routes the fault tests pin.
var watched = []string{"TopicTest", "t-000", "t-001", "t-002"}

// startWatcher runs a watcher until the test ends, without waiting for its first sync.
func startWatcher(t *testing.T, table *routing.Table, opts Options) *Watcher {
	t.Helper()
	w, err := New(table, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func proxyTo(t *testing.T, upstream string, opts faultnet.Options) *faultnet.Proxy {
	t.Helper()
	p, err := faultnet.Listen(upstream, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// pinned is the merged topics of names at one moment: a later change of any of them replaces its *Topic.
type pinned map[string]*routing.Topic

func pin(t *testing.T, table *routing.Table, names ...string) pinned {
	t.Helper()
	p := pinned{}
	for _, name := range names {
		if p[name] = table.Topic(name); p[name] == nil {
			t.Fatalf("topic %s is not in the model", name)
		}
	}
	return p
}

// unchanged fails the test unless every pinned topic is still the same value, same broker set and version.
func (p pinned) unchanged(t *testing.T, table *routing.Table, during string) {
	t.Helper()
	for name, before := range p {
		if now := table.Topic(name); now != before {
			t.Fatalf("%s changed %s's route: %s (version %d) -> %v", during, name, before.BrokerSet.Hash, before.Version, describe(now))
		}
	}
}

func describe(tp *routing.Topic) string {
	if tp == nil {
		return "withdrawn"
	}
	return fmt.Sprintf("%s (version %d, members %v)", tp.BrokerSet.Hash, tp.Version, memberNames(tp))
}

// errorCount is the watcher's error counter of one NameServer and request kind.
func errorCount(w *Watcher, addr, request string) float64 {
	var m dto.Metric
	if err := w.opts.Metrics.errors.WithLabelValues(w.opts.Source, addr, request).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// answered is how many requests of a kind a NameServer answered (the latency histogram's count).
func answered(w *Watcher, addr, request string) uint64 {
	var m dto.Metric
	obs := w.opts.Metrics.duration.WithLabelValues(w.opts.Source, addr, request)
	if err := obs.(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		panic(err)
	}
	return m.GetHistogram().GetSampleCount()
}

func invalidCount(w *Watcher, addr string) float64 {
	var m dto.Metric
	if err := w.opts.Metrics.invalid.WithLabelValues(w.opts.Source, addr).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func requestErrors(w *Watcher, addr string) float64 {
	return errorCount(w, addr, requestRoute) + errorCount(w, addr, requestBrokers) + errorCount(w, addr, requestTopics)
}

// countersAgree checks that the status and the metrics count the same failures: per NameServer, status errors
// are its failed route and broker-table requests; the watcher's errors are the failed route requests of all.
func countersAgree(t *testing.T, w *Watcher) {
	t.Helper()
	eventually(t, 2*time.Second, "status and metrics count the same errors", func() bool {
		st := w.Status()
		var routes float64
		for _, ns := range st.NameServers {
			routes += errorCount(w, ns.Addr, requestRoute)
			if float64(ns.Errors) != errorCount(w, ns.Addr, requestRoute)+errorCount(w, ns.Addr, requestBrokers) {
				return false
			}
		}
		return float64(st.Errors) == routes
	})
}

// errorsStop waits until the watcher has queried every topic once more since the fault ended and then checks that
// two further cycles fail no request at all.
func errorsStop(t *testing.T, w *Watcher) {
	t.Helper()
	cycle := func() {
		t.Helper()
		st := w.Status()
		eventually(t, 5*time.Second, "a full polling cycle", func() bool {
			return w.Status().Queries >= st.Queries+int64(st.Topics)
		})
	}
	cycle()
	sum := func() (n float64) {
		for _, ns := range w.Status().NameServers {
			n += requestErrors(w, ns.Addr)
		}
		return n
	}
	before := sum()
	cycle()
	cycle()
	if after := sum(); after != before {
		t.Fatalf("requests still failing after the fault ended: %v errors -> %v", before, after)
	}
}

// sameRoute reports whether the model serves a topic as the NameServer's 105 answer says.
func sameRoute(table *routing.Table, ns *embedded.NameServer, topic string) bool {
	d, ok := ns.Route(topic)
	tp := table.Topic(topic)
	if !ok || tp == nil {
		return !ok && tp == nil
	}
	want := RouteOf(&d).Members
	slices.SortFunc(want, func(a, b routing.Member) int { return cmp.Compare(a.BrokerName, b.BrokerName) })
	return slices.EqualFunc(tp.BrokerSet.Members, want, func(a, b routing.Member) bool {
		return a.BrokerName == b.BrokerName && a.Cluster == b.Cluster && a.Zone == b.Zone && slices.Equal(a.Addrs, b.Addrs) &&
			a.ReadQueueNums == b.ReadQueueNums && a.WriteQueueNums == b.WriteQueueNums && a.Perm == b.Perm && a.TopicSysFlag == b.TopicSysFlag
	})
}

// logRecorder is a slog handler that keeps every record as one line, for tests that check what was logged.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}

// count returns how many records contain every one of parts.
func (l *logRecorder) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

func recorded(opts *Options) *logRecorder {
	l := &logRecorder{}
	opts.Logger = slog.New(l)
	return l
}

// TestNameServerDownAtStartIsNeverSynced: a watcher whose only NameServer is down never reports synced, so serve
// never serves an empty world as ready; it says why, counts only the broker-table polls it tried, and syncs as
// soon as the NameServer is back.
func TestNameServerDownAtStartIsNeverSynced(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	addr := ns.Addr()
	ns.Pause()
	table := routing.NewTable()
	opts := testOptions(100*time.Millisecond, addr)
	logs := &testutil.LogBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	w := startWatcher(t, table, opts)

	eventually(t, 5*time.Second, "three failed broker-table polls", func() bool { return errorCount(w, addr, requestBrokers) >= 3 })
	select {
	case <-w.Synced():
		t.Fatal("synced while its only NameServer is down")
	default:
	}
	st := w.Status()
	if st.Synced || st.Topics != 0 || table.Version() != 0 {
		t.Fatalf("status during the outage: synced %v, %d topics, model version %d", st.Synced, st.Topics, table.Version())
	}
	if a := st.NameServers[0]; a.Reachable || !strings.Contains(a.LastError, "connection refused") || a.Brokers != 0 {
		t.Fatalf("NameServer status during the outage: %+v", a)
	}
	// Nothing else was tried: no topic is known, and lists are asked only after a good broker table.
	if r, l, ok := errorCount(w, addr, requestRoute), errorCount(w, addr, requestTopics), answered(w, addr, requestBrokers); r != 0 || l != 0 || ok != 0 {
		t.Fatalf("during the outage: %v route errors, %v list errors, %d broker tables answered", r, l, ok)
	}
	countersAgree(t, w)
	failed := errorCount(w, addr, requestBrokers)
	// It never answered: there are no routes of its to keep, and the log does not say there are.
	if l := logs.String(); !strings.Contains(l, "broker table poll failed; no routes from this NameServer yet") || strings.Contains(l, "keeping the last good routes") {
		t.Fatalf("log during the outage:\n%s", l)
	}

	if err := ns.Resume(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Synced():
	case <-time.After(5 * time.Second):
		t.Fatal("not synced after the NameServer came back")
	}
	for _, topic := range watched {
		if !sameRoute(table, ns, topic) {
			t.Fatalf("%s after the first sync: %v, NameServer says otherwise", topic, describe(table.Topic(topic)))
		}
	}
	if topics, _ := table.Stats(); topics != 21 {
		t.Fatalf("%d topics after the first sync, want 21", topics)
	}
	eventually(t, 2*time.Second, "reachable", func() bool { return w.Status().NameServers[0].Reachable })
	t.Logf("%v broker-table polls failed before the NameServer came back; synced with %d topics", failed, w.Status().Topics)
	// Down again, after it answered: now its last good routes are kept, and said so.
	ns.Pause()
	eventually(t, 5*time.Second, "the log of a failed poll after a good one", func() bool {
		return strings.Contains(logs.String(), "broker table poll failed; keeping the last good routes")
	})
}

// TestSlowNameServerKeepsRoutesAndRecovers: answers slower than the request timeout are failures, not routes; a
// change made on the NameServer meanwhile shows once it answers in time again.
func TestSlowNameServerKeepsRoutesAndRecovers(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	addr := ns.Addr()
	table := routing.NewTable()
	opts := testOptions(150*time.Millisecond, addr)
	opts.Client.RequestTimeout = 100 * time.Millisecond
	w := runWatcher(t, table, opts)
	kept, version := pin(t, table, watched...), table.Version()
	routeErrs, brokerErrs := errorCount(w, addr, requestRoute), errorCount(w, addr, requestBrokers)

	ns.SetLatency(300 * time.Millisecond) // three request timeouts
	if err := ns.SetPerm("TopicTest", "broker-b", routing.PermRead); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "route and broker-table requests timing out", func() bool {
		return errorCount(w, addr, requestRoute) >= routeErrs+10 && errorCount(w, addr, requestBrokers) >= brokerErrs+2
	})
	st := w.Status()
	// Every answer late, the connection reads as frozen and is redialled (TestFrozenNameServerIsRedialled): the
	// last error is a timeout, the silence that closed the connection, or the backoff after it.
	if a := st.NameServers[0]; a.Reachable || !strings.Contains(a.LastError, "no response within the timeout") &&
		!strings.Contains(a.LastError, "sent not one byte") {
		t.Fatalf("NameServer status while slow: %+v", a)
	}
	if !st.Synced || st.Removed != 0 || st.Topics != 21 {
		t.Fatalf("status while slow: synced %v, removed %d, %d topics", st.Synced, st.Removed, st.Topics)
	}
	kept.unchanged(t, table, "a slow NameServer")
	if v := table.Version(); v != version {
		t.Fatalf("a slow NameServer moved the model from version %d to %d", version, v)
	}
	slowErrors := errorCount(w, addr, requestRoute) - routeErrs

	ns.SetLatency(0)
	eventually(t, 5*time.Second, "the change made while slow", func() bool {
		return table.Topic("TopicTest").BrokerSet.Member("broker-b").Perm == routing.PermRead
	})
	eventually(t, 2*time.Second, "reachable", func() bool { return w.Status().NameServers[0].Reachable })
	errorsStop(t, w)
	countersAgree(t, w)
	t.Logf("%v route requests timed out while slow; recovered", slowErrors)
}

// TestCutFramesKeepRoutesAndRedial: responses cut in the middle of a frame and the connection closed (a crash or a
// reset mid-write) fail the requests on that connection only; every cut connection is replaced.
func TestCutFramesKeepRoutesAndRedial(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	p := proxyTo(t, ns.Addr(), faultnet.Options{})
	table := routing.NewTable()
	opts := testOptions(150*time.Millisecond, p.Addr())
	logs := recorded(&opts)
	w := runWatcher(t, table, opts)
	kept, version := pin(t, table, watched...), table.Version()
	accepted := p.Accepted()

	p.Always(faultnet.Cut)
	eventually(t, 5*time.Second, "three responses cut", func() bool {
		return p.Applied() >= 3 && !w.Status().NameServers[0].Reachable
	})
	kept.unchanged(t, table, "cut frames")
	if v := table.Version(); v != version {
		t.Fatalf("cut frames moved the model from version %d to %d", version, v)
	}
	if logs.count("closing nameserver connection after a bad frame", "stream ended inside a frame") == 0 {
		t.Fatal("no cut frame was logged as such")
	}
	if st := w.Status(); !st.Synced || st.Removed != 0 || st.NameServers[0].LastError == "" {
		t.Fatalf("status while frames are cut: %+v", st)
	}

	healAndRecover(t, ns, p, table, w, "after-cut")
	cuts := p.Applied()
	// A cut closes its connection before anything else is read from it: one connection per cut, and one more for
	// the recovery.
	if got := p.Accepted() - accepted; got != cuts+1 && got != cuts {
		t.Fatalf("%d connections for %d cut responses", got, cuts)
	}
	if errs := w.Status().NameServers[0].Errors; errs < cuts {
		t.Fatalf("%d errors counted for %d cut responses", errs, cuts)
	}
	kept.unchanged(t, table, "recovery")
	t.Logf("%d responses cut, %d connections, %d errors counted", cuts, p.Accepted(), w.Status().NameServers[0].Errors)
}

// TestStalledFrameIsReplaced: a response cut in the middle of a frame on a connection left open. Before the client
// noticed such stalls, its reader waited for the rest forever: every request on the connection timed out and the
// connection, neither dead nor idle, was never replaced, which froze that NameServer's routes for good.
func TestStalledFrameIsReplaced(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	p := proxyTo(t, ns.Addr(), faultnet.Options{})
	table := routing.NewTable()
	opts := testOptions(150*time.Millisecond, p.Addr())
	opts.Client.RequestTimeout = 100 * time.Millisecond
	logs := recorded(&opts)
	w := runWatcher(t, table, opts)
	kept := pin(t, table, watched...)
	accepted := p.Accepted()

	p.Always(faultnet.Stall)
	eventually(t, 5*time.Second, "three stalled connections replaced", func() bool {
		return logs.count("closing nameserver connection stalled inside a frame") >= 3 && !w.Status().NameServers[0].Reachable
	})
	kept.unchanged(t, table, "stalled frames")
	if st := w.Status(); !st.Synced || st.Removed != 0 || st.Errors == 0 {
		t.Fatalf("status while frames stall: %+v", st)
	}

	healAndRecover(t, ns, p, table, w, "after-stall")
	stalls := p.Applied()
	if got := p.Accepted() - accepted; got != stalls+1 && got != stalls {
		t.Fatalf("%d connections for %d stalled responses", got, stalls)
	}
	kept.unchanged(t, table, "recovery")
	t.Logf("%d stalled connections replaced; %d route errors", stalls, w.Status().Errors)
}

// TestFrozenNameServerIsRedialled: a NameServer that freezes entirely (its connections open, not one byte back)
// times out every request. Before the client counted such silences, it kept the frozen connection for good: the
// NameServer showed unreachable for ever, even once a process on the same address answered again. Now a few
// request timeouts in a row with nothing received close the connection, and the NameServer is redialled.
func TestFrozenNameServerIsRedialled(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	p := proxyTo(t, ns.Addr(), faultnet.Options{})
	table := routing.NewTable()
	opts := testOptions(150*time.Millisecond, p.Addr())
	opts.Client.RequestTimeout = 100 * time.Millisecond
	opts.Client.SilentTimeouts = 2
	logs := recorded(&opts)
	w := runWatcher(t, table, opts)
	kept, version := pin(t, table, watched...), table.Version()
	accepted := p.Accepted()

	// Frozen: every connection, the one in use and each new one, gets nothing back.
	p.Always(faultnet.Freeze)
	eventually(t, 5*time.Second, "unreachable while frozen", func() bool {
		a := w.Status().NameServers[0]
		return !a.Reachable && strings.Contains(a.LastError, "no response within the timeout")
	})
	eventually(t, 5*time.Second, "the frozen connections closed and redialled", func() bool {
		return logs.count("closing nameserver connection that sent nothing back") >= 2 && p.Accepted()-accepted >= 2
	})
	kept.unchanged(t, table, "a frozen NameServer")
	if v := table.Version(); v != version {
		t.Fatalf("a frozen NameServer moved the model from version %d to %d", version, v)
	}
	if st := w.Status(); !st.Synced || st.Removed != 0 {
		t.Fatalf("status while frozen: %+v", st)
	}

	// Answering again (Heal leaves the frozen connections frozen): the next connection gets answers.
	healAndRecover(t, ns, p, table, w, "after-freeze")
	eventually(t, 2*time.Second, "reachable", func() bool { return w.Status().NameServers[0].Reachable })
	kept.unchanged(t, table, "recovery")
	t.Logf("%d frozen responses, %d connections", p.Applied(), p.Accepted()-accepted)
}

// TestGarbageBytesKeepRoutes: bytes that are no frame at all (a peer that is not a NameServer, a corrupting
// middlebox) close the connection they came on; the routes stay and follow again afterwards.
func TestGarbageBytesKeepRoutes(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	p := proxyTo(t, ns.Addr(), faultnet.Options{})
	table := routing.NewTable()
	opts := testOptions(150*time.Millisecond, p.Addr())
	logs := recorded(&opts)
	w := runWatcher(t, table, opts)
	kept, version := pin(t, table, watched...), table.Version()

	p.Always(faultnet.Garbage)
	eventually(t, 5*time.Second, "three connections closed by the client on garbage", func() bool {
		return p.ClientClosed() >= 3 && !w.Status().NameServers[0].Reachable
	})
	kept.unchanged(t, table, "garbage")
	if v := table.Version(); v != version {
		t.Fatalf("garbage moved the model from version %d to %d", version, v)
	}
	if logs.count("closing nameserver connection after a bad frame", "malformed remoting frame") == 0 {
		t.Fatal("garbage was not logged as a bad frame")
	}
	if st := w.Status(); !st.Synced || st.Removed != 0 {
		t.Fatalf("status while garbage arrives: %+v", st)
	}

	healAndRecover(t, ns, p, table, w, "after-garbage")
	kept.unchanged(t, table, "recovery")
	t.Logf("%d garbage responses, %d connections closed by the client, %d errors", p.Applied(), p.ClientClosed(), w.Status().NameServers[0].Errors)
}

// TestOversizedFrameIsRefusedBeforeAllocating: a length prefix announcing 1 GiB against a 1 MiB limit is refused on
// the prefix: the client closes the connection at once, allocates nothing like the announced size, and the other
// NameServer's connection never notices.
func TestOversizedFrameIsRefusedBeforeAllocating(t *testing.T) {
	ns1, ns2 := startNameServer(t), startNameServer(t)
	demoLike(ns1, 20)
	demoLike(ns2, 20)
	p := proxyTo(t, ns1.Addr(), faultnet.Options{OversizeLength: 1 << 30})
	table := routing.NewTable()
	opts := testOptions(150*time.Millisecond, p.Addr(), ns2.Addr())
	opts.Client.MaxFrameSize = 1 << 20
	logs := recorded(&opts)
	w := runWatcher(t, table, opts)
	kept, version := pin(t, table, watched...), table.Version()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p.Always(faultnet.Oversize)
	eventually(t, 5*time.Second, "three oversized frames refused", func() bool {
		return p.ClientClosed() >= 3 && !w.Status().NameServers[0].Reachable
	})
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 {
		t.Fatalf("%d MiB allocated while refusing %d frames announcing 1 GiB each", grown>>20, p.Applied())
	}
	if logs.count("closing nameserver connection after a bad frame", "exceeds the size limit: 1073741824 bytes announced, limit 1048576") == 0 {
		t.Fatal("no oversized frame was refused on its length")
	}
	kept.unchanged(t, table, "oversized frames")
	if v := table.Version(); v != version {
		t.Fatalf("oversized frames moved the model from version %d to %d", version, v)
	}
	// The other NameServer: its one connection, no error, reachable.
	if d, e, st := w.ns[1].client.Dials(), requestErrors(w, ns2.Addr()), w.Status().NameServers[1]; d != 1 || e != 0 || !st.Reachable {
		t.Fatalf("the other NameServer: %d dials, %v errors, status %+v", d, e, st)
	}

	healAndRecover(t, ns1, p, table, w, "after-oversize")
	if d, e := w.ns[1].client.Dials(), requestErrors(w, ns2.Addr()); d != 1 || e != 0 {
		t.Fatalf("the other NameServer after recovery: %d dials, %v errors", d, e)
	}
	t.Logf("%d oversized frames refused (%d connections closed by the client), %d KiB allocated meanwhile",
		p.Applied(), p.ClientClosed(), (after.TotalAlloc-before.TotalAlloc)>>10)
}

// TestUndecodableAnswersKeepRoutes: well-formed frames whose bodies are not JSON (route answers and broker tables)
// are failures: counted in the status and the metrics alike, routes kept.
func TestUndecodableAnswersKeepRoutes(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 20)
	p := proxyTo(t, ns.Addr(), faultnet.Options{})
	addr := p.Addr()
	table := routing.NewTable()
	w := runWatcher(t, table, testOptions(150*time.Millisecond, addr))
	kept, version := pin(t, table, watched...), table.Version()
	routeErrs, brokerErrs, statusErrs := errorCount(w, addr, requestRoute), errorCount(w, addr, requestBrokers), w.Status().Errors

	p.Always(faultnet.Body)
	eventually(t, 5*time.Second, "undecodable route answers and broker tables", func() bool {
		return errorCount(w, addr, requestRoute) >= routeErrs+10 && errorCount(w, addr, requestBrokers) >= brokerErrs+2 &&
			w.Status().Errors >= statusErrs+10
	})
	kept.unchanged(t, table, "undecodable answers")
	if v := table.Version(); v != version {
		t.Fatalf("undecodable answers moved the model from version %d to %d", version, v)
	}
	if st := w.Status(); !st.Synced || st.Removed != 0 {
		t.Fatalf("status while answers are undecodable: %+v", st)
	}
	countersAgree(t, w)

	healAndRecover(t, ns, p, table, w, "after-bad-bodies")
	kept.unchanged(t, table, "recovery")
	t.Logf("%d bodies replaced; %v route and %v broker-table errors", p.Applied(),
		errorCount(w, addr, requestRoute)-routeErrs, errorCount(w, addr, requestBrokers)-brokerErrs)
}

// TestStaleAndContradictingNameServers: NameServers do not sync, so one can hold an older route (a registration
// it missed) or other addresses for a broker group (a master that moved). The table merges by broker group and the
// source that sorts first wins a group both report (docs/architecture.md): that is what is served, whichever of
// the two is stale, with no error anywhere; once the stale one catches up, the model converges.
func TestStaleAndContradictingNameServers(t *testing.T) {
	a, b := startNameServer(t), startNameServer(t)
	for _, ns := range []*embedded.NameServer{a, b} {
		ns.RegisterBroker(brokerGroup("c1", "broker-a", 10))
		ns.RegisterBroker(brokerGroup("c1", "broker-b", 20))
		ns.SetTopic("stale-on-first", queues("broker-a", 6, 8))
		ns.SetTopic("stale-on-second", queues("broker-a", 6, 8))
		ns.SetTopic("moved", queues("broker-b", 6, 8))
	}
	table := routing.NewTable()
	w := runWatcher(t, table, testOptions(150*time.Millisecond, a.Addr(), b.Addr()))
	// Which NameServer's source sorts first depends on the ports: name them by that order.
	first, second, src1, src2 := a, b, w.ns[0].source, w.ns[1].source
	if src2 < src1 {
		first, second, src1, src2 = b, a, src2, src1
	}

	// Each NameServer gets a registration the other misses.
	must(t, second.SetPerm("stale-on-first", "broker-a", routing.PermRead))
	must(t, first.SetPerm("stale-on-second", "broker-a", routing.PermRead))
	second.RegisterBroker(brokerGroup("c1", "broker-b", 40)) // broker-b's master moved; first has not heard
	eventually(t, 5*time.Second, "both NameServers' views in their sources", func() bool {
		s1, s2, s3 := table.SourceTopic(src2, "stale-on-first"), table.SourceTopic(src1, "stale-on-second"), table.SourceTopic(src2, "moved")
		return s1 != nil && s1.Member("broker-a").Perm == routing.PermRead &&
			s2 != nil && s2.Member("broker-a").Perm == routing.PermRead &&
			s3 != nil && s3.Member("broker-b").Master() == "127.0.1.40:10911"
	})
	if m := table.Topic("stale-on-first").BrokerSet.Member("broker-a"); m.Perm != 6 {
		t.Fatalf("stale-on-first serves perm %d; the first source's (stale) perm 6 should win", m.Perm)
	}
	if m := table.Topic("stale-on-second").BrokerSet.Member("broker-a"); m.Perm != routing.PermRead {
		t.Fatalf("stale-on-second serves perm %d; the first source's (fresh) perm 4 should win", m.Perm)
	}
	if m := table.Topic("moved").BrokerSet.Member("broker-b"); m.Master() != "127.0.1.20:10911" {
		t.Fatalf("moved serves master %s; the first source's (old) address should win", m.Master())
	}
	brokers := table.Brokers()
	if i := slices.IndexFunc(brokers, func(b routing.Broker) bool { return b.Name == "broker-b" }); i < 0 || brokers[i].Addrs[0].Addr != "127.0.1.20:10911" {
		t.Fatalf("merged broker table: %+v; the first source's broker-b should win", brokers)
	}
	st := w.Status()
	for _, ns := range st.NameServers {
		if !ns.Reachable || requestErrors(w, ns.Addr) != 0 {
			t.Fatalf("a stale NameServer is not an error, yet: %+v, %v errors", ns, requestErrors(w, ns.Addr))
		}
	}

	// The stale NameServer catches up: every route converges to what both say.
	must(t, first.SetPerm("stale-on-first", "broker-a", routing.PermRead))
	must(t, second.SetPerm("stale-on-second", "broker-a", routing.PermRead))
	first.RegisterBroker(brokerGroup("c1", "broker-b", 40))
	eventually(t, 5*time.Second, "converged", func() bool {
		for _, topic := range []string{"stale-on-first", "stale-on-second", "moved"} {
			if !sameRoute(table, first, topic) || !sameRoute(table, second, topic) {
				return false
			}
		}
		return true
	})
	t.Logf("first source %s; stale-first served perm 6 until it caught up, moved served the old master", src1)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFlappingBrokerLosesNoTopic: a broker group expires and registers again, over and over, with failed polls in
// between (corrupt answers, dropped connections). Topics only it serves are answered 17 while it is away and keep
// their last good route (within RemoveAfter, the re-registration period); topics it shares narrow to the other
// group and widen again; topics elsewhere never change; at the end every route is the NameServer's.
func TestFlappingBrokerLosesNoTopic(t *testing.T) {
	ns := startNameServer(t)
	register := func() {
		ns.RegisterBroker(brokerGroup("c1", "broker-a", 10))
		ns.RegisterBroker(brokerGroup("c1", "broker-b", 20))
		for i := range 10 {
			ns.SetTopic(fmt.Sprintf("only-b-%d", i), queues("broker-b", 6, 4))
			ns.SetTopic(fmt.Sprintf("a-and-b-%d", i), queues("broker-a", 6, 4), queues("broker-b", 6, 4))
			ns.SetTopic(fmt.Sprintf("only-a-%d", i), queues("broker-a", 6, 4))
		}
	}
	register()
	table := routing.NewTable()
	opts := testOptions(100*time.Millisecond, ns.Addr())
	opts.BrokerInterval = 50 * time.Millisecond
	opts.RemoveAfter = 30 * time.Second // the default: a broker re-registers every 30 s
	w := runWatcher(t, table, opts)
	topics := ns.Topics()
	var onlyA, onlyB []string
	for _, name := range topics {
		switch {
		case strings.HasPrefix(name, "only-a-"):
			onlyA = append(onlyA, name)
		case strings.HasPrefix(name, "only-b-"):
			onlyB = append(onlyB, name)
		}
	}
	keptA, keptB := pin(t, table, onlyA...), pin(t, table, onlyB...)
	lost := func() (out []string) {
		for _, name := range topics {
			if table.Topic(name) == nil {
				out = append(out, name)
			}
		}
		return out
	}
	cycle := func() {
		q := w.Status().Queries
		eventually(t, 5*time.Second, "a polling cycle", func() bool { return w.Status().Queries >= q+int64(len(topics)) })
	}

	const flaps = 6
	for flap := range flaps {
		ns.ExpireBroker("broker-b")
		switch flap % 3 {
		case 1:
			ns.CorruptResponses(3) // failed polls while the broker is away
		case 2:
			ns.DropConnections()
		}
		cycle()
		if l := lost(); len(l) > 0 {
			t.Fatalf("flap %d: topics lost while broker-b was away: %v", flap, l)
		}
		eventually(t, 5*time.Second, "shared topics narrowed to broker-a", func() bool {
			return slices.Equal(memberNames(table.Topic("a-and-b-0")), []string{"broker-a"})
		})
		keptB.unchanged(t, table, fmt.Sprintf("flap %d, broker-b away", flap))
		register()
		cycle()
		if l := lost(); len(l) > 0 {
			t.Fatalf("flap %d: topics lost after broker-b came back: %v", flap, l)
		}
	}
	eventually(t, 5*time.Second, "every route is the NameServer's", func() bool {
		for _, name := range topics {
			if !sameRoute(table, ns, name) {
				return false
			}
		}
		return true
	})
	keptA.unchanged(t, table, "broker-b flapping")
	keptB.unchanged(t, table, "broker-b flapping")
	if st := w.Status(); st.Removed != 0 || st.Topics != len(topics) {
		t.Fatalf("after %d flaps: %d topics withdrawn, %d followed of %d", flaps, st.Removed, st.Topics, len(topics))
	}
	t.Logf("%d flaps: %d queries, %d unchanged answers, %d errors, %d brought forward by broker changes, none withdrawn",
		flaps, w.Status().Queries, w.Status().Unchanged, w.Status().Errors, w.Status().BrokerRequeues)
}

// invalidTopics break RocketMQ's naming rules; a NameServer should never list them, but it stores whatever a
// broker registered.
var invalidTopics = []string{"", "orders eu", "orders/eu", "订单", "%RETRY%cg+orders", strings.Repeat("x", 128)}

// TestInvalidTopicNamesAreSkipped: names in a NameServer's topic list (206, or 224 per cluster) that RocketMQ would
// not accept are skipped: never followed nor applied, counted in the status and the metrics, logged once, and the
// rest of the list syncs.
func TestInvalidTopicNamesAreSkipped(t *testing.T) {
	longRetry := "%RETRY%" + strings.Repeat("g", 200) // valid: retry topics may be 255 long
	for _, list := range []string{"206", "224"} {
		t.Run(list, func(t *testing.T) {
			ns := startNameServer(t)
			demoLike(ns, 5)
			ns.SetAllTopicListEnabled(list == "206")
			for _, name := range append([]string{longRetry}, invalidTopics...) {
				ns.SetTopic(name, queues("broker-a", 6, 4))
			}
			table := routing.NewTable()
			opts := testOptions(time.Hour, ns.Addr()) // one topic list: the counts are exact
			logs := recorded(&opts)
			w := runWatcher(t, table, opts)

			valid := []string{longRetry, "TopicTest", "t-000", "t-001", "t-002", "t-003", "t-004"}
			slices.Sort(valid)
			if got := w.Topics(); !slices.Equal(got, valid) {
				t.Fatalf("followed %q, want %q", got, valid)
			}
			for _, name := range invalidTopics {
				if table.Topic(name) != nil {
					t.Fatalf("invalid topic %q reached the model", name)
				}
			}
			if topics, _ := table.Stats(); topics != len(valid) || table.Topic(longRetry) == nil {
				t.Fatalf("%d topics in the model, want %d", topics, len(valid))
			}
			n := len(invalidTopics)
			st := w.Status()
			if st.InvalidNames != int64(n) || st.NameServers[0].InvalidTopics != n || invalidCount(w, ns.Addr()) != float64(n) {
				t.Fatalf("counted %d invalid names (NameServer %d, metric %v), want %d",
					st.InvalidNames, st.NameServers[0].InvalidTopics, invalidCount(w, ns.Addr()), n)
			}
			if st.Errors != 0 || !st.Synced || requestErrors(w, ns.Addr()) != 0 {
				t.Fatalf("invalid names failed something: %+v", st)
			}
			if c := logs.count("WARN", "not valid RocketMQ names", fmt.Sprintf("invalid=%d", n), "orders eu"); c != 1 {
				t.Fatalf("%d warnings about the invalid names, want 1", c)
			}
		})
	}
}

// TestInvalidTopicsInUseAreNotFollowed: in in-use mode any name a consumer asks for (an xDS subscription names any
// resource) reaches the watcher; one that is no valid topic is never sent to the NameServer, which here would
// answer it with a route.
func TestInvalidTopicsInUseAreNotFollowed(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 5)
	ns.SetTopic("orders eu", queues("broker-a", 6, 4))
	table := routing.NewTable()
	opts := testOptions(100*time.Millisecond, ns.Addr())
	opts.Mode = ModeInUse
	logs := recorded(&opts)
	w := runWatcher(t, table, opts)

	release := table.Interest().Want("TopicTest", "orders eu", "a/b")
	eventually(t, 3*time.Second, "the valid topic resolved", func() bool { return table.Topic("TopicTest") != nil })
	q := w.Status().Queries
	eventually(t, 3*time.Second, "two more polls", func() bool { return w.Status().Queries >= q+2 })
	if table.Topic("orders eu") != nil || table.Topic("a/b") != nil {
		t.Fatal("an invalid topic in use reached the model")
	}
	if got := w.Topics(); !slices.Equal(got, []string{"TopicTest"}) {
		t.Fatalf("followed %q", got)
	}
	if st := w.Status(); st.InvalidNames != 2 || st.Errors != 0 {
		t.Fatalf("status: %d invalid names, %d errors; want 2 and 0", st.InvalidNames, st.Errors)
	}
	if logs.count("WARN", "not a valid RocketMQ name", "orders eu") != 1 || logs.count("WARN", "not a valid RocketMQ name", "a/b") != 1 {
		t.Fatal("the invalid topics in use were not each logged once")
	}
	release()
	eventually(t, 3*time.Second, "released", func() bool { return table.Topic("TopicTest") == nil })
}

func TestInvalidConfiguredTopicIsRefused(t *testing.T) {
	_, err := New(routing.NewTable(), Options{Addrs: []string{"127.0.0.1:1"}, Topics: []string{"TopicTest", "orders eu"}})
	if err == nil || !strings.Contains(err.Error(), `configured topic list`) || !strings.Contains(err.Error(), `"orders eu"`) {
		t.Fatalf("New with an invalid configured topic: %v", err)
	}
}

// TestInvalidNamesLoggedWhenTheyChange: every topic list counts its invalid names, but the warning comes once per
// set of them, not at every poll.
func TestInvalidNamesLoggedWhenTheyChange(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 5)
	for _, name := range invalidTopics {
		ns.SetTopic(name, queues("broker-a", 6, 4))
	}
	table := routing.NewTable()
	opts := testOptions(50*time.Millisecond, ns.Addr())
	logs := recorded(&opts)
	w := runWatcher(t, table, opts)
	n := float64(len(invalidTopics))
	eventually(t, 5*time.Second, "three topic lists", func() bool { return invalidCount(w, ns.Addr()) >= 3*n })
	if c := logs.count("not valid RocketMQ names"); c != 1 {
		t.Fatalf("%d warnings for the same invalid names over %v lists", c, invalidCount(w, ns.Addr())/n)
	}
	ns.SetTopic("one more", queues("broker-a", 6, 4))
	eventually(t, 5*time.Second, "a warning for the new set", func() bool {
		return logs.count("not valid RocketMQ names", fmt.Sprintf("invalid=%d", len(invalidTopics)+1)) == 1
	})
	if got := w.Status().NameServers[0].InvalidTopics; got != len(invalidTopics)+1 {
		t.Fatalf("the last list has %d invalid names, want %d", got, len(invalidTopics)+1)
	}
	if topics, _ := table.Stats(); topics != 6 {
		t.Fatalf("%d topics in the model, want the 6 valid ones", topics)
	}
}

// healAndRecover ends the proxy's fault and checks the recovery: a topic created now on ns reaches the table, the
// watcher's errors stop, and its status and metrics agree.
func healAndRecover(t *testing.T, ns *embedded.NameServer, p *faultnet.Proxy, table *routing.Table, w *Watcher, topic string) {
	t.Helper()
	ns.SetTopic(topic, queues("broker-a", 6, 2))
	p.Heal()
	eventually(t, 5*time.Second, "a topic created after the fault ends", func() bool { return table.Topic(topic) != nil })
	errorsStop(t, w)
	countersAgree(t, w)
}

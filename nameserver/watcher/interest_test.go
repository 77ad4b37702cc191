package watcher

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
)

// TestTwoInUseWatchersEachLearnEveryTopicInUse: two in-use watchers on one table (issue 16, bug 1), each over its
// own NameServer holding the same topics, both follow every topic in use; neither takes a share of the other's.
func TestTwoInUseWatchersEachLearnEveryTopicInUse(t *testing.T) {
	ns1, ns2 := startNameServer(t), startNameServer(t)
	demoLike(ns1, 10)
	demoLike(ns2, 10)
	table := routing.NewTable()
	var watchers []*Watcher
	for i, ns := range []string{ns1.Addr(), ns2.Addr()} {
		opts := testOptions(100*time.Millisecond, ns)
		opts.Source = fmt.Sprintf("w%d", i)
		opts.Mode = ModeInUse
		watchers = append(watchers, runWatcher(t, table, opts))
	}
	want := []string{"TopicTest", "t-000", "t-001", "t-002", "t-003", "t-004"}
	// One Want per topic, some apart, as streams subscribe: each change is its own signal.
	for _, name := range want {
		release := table.Interest().Want(name)
		t.Cleanup(release)
		time.Sleep(2 * time.Millisecond)
	}
	slices.Sort(want)
	learned := func() (a, b []string) {
		return table.SourceTopics("w0@" + ns1.Addr()), table.SourceTopics("w1@" + ns2.Addr())
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		a, b := learned()
		if slices.Equal(a, want) && slices.Equal(b, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("of %d topics in use, watcher 0 learned %d %v, watcher 1 learned %d %v (followed %d and %d)",
				len(want), len(a), a, len(b), b, watchers[0].Status().Topics, watchers[1].Status().Topics)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s0, s1 := watchers[0].Status().Topics, watchers[1].Status().Topics; s0 != len(want) || s1 != len(want) {
		t.Fatalf("watchers follow %d and %d topics, want %d each", s0, s1, len(want))
	}
}

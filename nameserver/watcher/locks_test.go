package watcher

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
)

// TestTableWritesHoldNoWatcherLock: the watcher writes routes to the table without holding its own mutex, so locks
// never nest across the two packages. Each of the first table writes here calls Status, which takes the watcher's
// mutex, from another goroutine, as a table reader calling back into the watcher would; while the watcher held its
// mutex across table.Apply, Status waited for the write and the write for Status: a deadlock, bounded here.
func TestTableWritesHoldNoWatcherLock(t *testing.T) {
	ns := startNameServer(t)
	demoLike(ns, 5)
	table := routing.NewTable()
	w, err := New(table, testOptions(100*time.Millisecond, ns.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	var checked, blocked atomic.Int64
	apply := tableApply
	t.Cleanup(func() { tableApply = apply })
	tableApply = func(table *routing.Table, source string, updates ...routing.Update) uint64 {
		if checked.Add(1) <= 4 {
			done := make(chan struct{})
			go func() { w.Status(); close(done) }()
			select {
			case <-done:
			case <-time.After(500 * time.Millisecond):
				blocked.Add(1) // Status finishes once the watcher lets go of its mutex, after this write
			}
		}
		return apply(table, source, updates...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { w.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	select {
	case <-w.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher never synced")
	}
	if checked.Load() == 0 {
		t.Fatal("no table write to check")
	}
	if n := blocked.Load(); n > 0 {
		t.Fatalf("%d of %d table writes were made with the watcher's mutex held: Status waited for them", n, min(checked.Load(), 4))
	}
	if table.Topic("TopicTest") == nil {
		t.Fatal("routes not applied")
	}
}

package routing

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestFollowCallsBackEachChangeUntilTheContextEnds: Follow sees changes made after it starts, coalesced, and
// returns the context's error when it ends.
func TestFollowCallsBackEachChangeUntilTheContextEnds(t *testing.T) {
	table := NewTable()
	table.Apply("test", Update{Topic: "before", Route: &Route{Members: []Member{{BrokerName: "b", Perm: 6}}}})
	ctx, cancel := context.WithCancel(context.Background())
	seen := make(chan ChangeSet, 16)
	done := make(chan error, 1)
	go func() { done <- table.Follow(ctx, func(cs ChangeSet) { seen <- cs }) }()
	deadline := time.After(5 * time.Second)
	for {
		// Follow may not have subscribed yet: change the topic until a change reaches it.
		table.Apply("test", Update{Topic: "after", Route: &Route{Members: []Member{{BrokerName: "b", Perm: 6}}}})
		table.Apply("test", Update{Topic: "after"})
		select {
		case cs := <-seen:
			if _, ok := cs.Topics["before"]; ok {
				t.Fatalf("a change from before Follow started: %+v", cs)
			}
			if _, ok := cs.Topics["after"]; !ok {
				t.Fatalf("change %+v does not name the topic changed", cs)
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Follow returned %v after its context ended", err)
			}
			return
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("no change reached Follow")
		}
	}
}

package routing

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestInterestEveryReaderSeesEveryTopic: two readers of one table's Interest, six topics wanted one at a time
// while both read (issue 16, bug 1: they used to split them, 4 and 2, none in both). Each sees all six.
func TestInterestEveryReaderSeesEveryTopic(t *testing.T) {
	in := NewTable().Interest()
	want := []string{"a", "b", "c", "d", "e", "f"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen := make([][]string, 2)
	var wg sync.WaitGroup
	for r := range seen {
		rd := in.Follow()
		wg.Go(func() {
			defer rd.Close()
			wanted := map[string]bool{}
			for len(wanted) < len(want) {
				select {
				case <-ctx.Done():
					return
				case <-rd.Changed():
				}
				added, removed := rd.Drain()
				for _, name := range added {
					wanted[name] = true
				}
				for _, name := range removed {
					delete(wanted, name)
				}
				seen[r] = slices.Sorted(maps.Keys(wanted))
			}
		})
	}
	for _, name := range want {
		defer in.Want(name)()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	for r, got := range seen {
		if !slices.Equal(got, want) {
			t.Errorf("reader %d saw %d of %d topics in use: %v", r, len(got), len(want), got)
		}
	}
}

// TestInterestReaderStartsFromEveryTopicInUse: a reader taken late starts from the whole set, and changes before
// its first Drain are folded in.
func TestInterestReaderStartsFromEveryTopicInUse(t *testing.T) {
	in := NewTable().Interest()
	releaseA := in.Want("a", "b")
	first := in.Follow()
	defer first.Close()
	first.Drain()
	rd := in.Follow()
	defer rd.Close()
	releaseA()
	defer in.Want("c")()
	select {
	case <-rd.Changed():
	default:
		t.Fatal("a reader with topics to drain is not signalled")
	}
	if added, removed := rd.Drain(); !slices.Equal(added, []string{"c"}) || !slices.Equal(removed, nil) {
		t.Fatalf("late reader: added %v removed %v, want [c] and nothing (a, b wanted and released before its Drain)", added, removed)
	}
	if added, removed := first.Drain(); !slices.Equal(added, []string{"c"}) || !slices.Equal(removed, []string{"a", "b"}) {
		t.Fatalf("first reader: added %v removed %v", added, removed)
	}
	empty := NewTable().Interest().Follow()
	defer empty.Close()
	select {
	case <-empty.Changed():
		t.Fatal("a reader of an unused Interest is signalled")
	default:
	}
}

// TestInterestClosedReaderIsForgotten: a reader that goes away releases its cursor; the Interest keeps no
// changes for it.
func TestInterestClosedReaderIsForgotten(t *testing.T) {
	in := NewTable().Interest()
	for range 100 {
		rd := in.Follow()
		defer in.Want("a")()
		rd.Close()
		if added, removed := rd.Drain(); added != nil || removed != nil {
			t.Fatalf("closed reader drained %v %v", added, removed)
		}
	}
	in.mu.Lock()
	n := len(in.readers)
	in.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d closed readers still held", n)
	}
}

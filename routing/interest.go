package routing

import (
	"maps"
	"slices"
	"sync"
)

// Interest counts which topics consumers of the model use. A source in "topics in use" mode discovers and polls
// only these, so its load follows the topics used, not the topics that exist. Any number of sources may follow
// it at once: each takes its own InterestReader (Follow), as each consumer of the table takes its own Subscription.
type Interest struct {
	mu      sync.Mutex
	refs    map[string]int
	readers map[*InterestReader]struct{}
}

func newInterest() *Interest {
	return &Interest{refs: make(map[string]int), readers: make(map[*InterestReader]struct{})}
}

// Want marks topics as used until the returned release function is called (once; later calls do nothing).
func (i *Interest) Want(topics ...string) (release func()) {
	topics = slices.Clone(topics)
	i.mu.Lock()
	for _, name := range topics {
		if i.refs[name]++; i.refs[name] == 1 {
			i.changedLocked(name, true)
		}
	}
	i.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			i.mu.Lock()
			for _, name := range topics {
				if i.refs[name]--; i.refs[name] == 0 {
					delete(i.refs, name)
					i.changedLocked(name, false)
				}
			}
			i.mu.Unlock()
		})
	}
}

// changedLocked records on every reader that name was wanted (or released) and signals it.
func (i *Interest) changedLocked(name string, wanted bool) {
	for r := range i.readers {
		if wanted {
			mark(&r.added, &r.removed, name)
		} else {
			mark(&r.removed, &r.added, name)
		}
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}

// mark records name in into, cancelling a pending opposite change in from.
func mark(into, from *map[string]struct{}, name string) {
	if _, ok := (*from)[name]; ok {
		delete(*from, name)
		return
	}
	if *into == nil {
		*into = make(map[string]struct{})
	}
	(*into)[name] = struct{}{}
}

// Wanted reports whether a topic is in use.
func (i *Interest) Wanted(topic string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.refs[topic] > 0
}

// Topics returns every topic in use, sorted.
func (i *Interest) Topics() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Sorted(maps.Keys(i.refs))
}

// Follow returns a reader with a cursor of its own: its first Drain returns every topic in use now as added,
// later ones what changed since the previous Drain. Every reader sees every change, however many follow the same
// Interest. Close it when done; until then it holds the changes it has not drained.
func (i *Interest) Follow() *InterestReader {
	i.mu.Lock()
	defer i.mu.Unlock()
	r := &InterestReader{in: i, notify: make(chan struct{}, 1)}
	for name := range i.refs {
		mark(&r.added, &r.removed, name)
	}
	if len(r.added) > 0 {
		r.notify <- struct{}{}
	}
	i.readers[r] = struct{}{}
	return r
}

// InterestReader follows an Interest from the point Follow took it. It is for one goroutine.
type InterestReader struct {
	in      *Interest
	added   map[string]struct{} // wanted since the last Drain, not yet released; guarded by in.mu
	removed map[string]struct{} // released since the last Drain; guarded by in.mu
	notify  chan struct{}
}

// Changed is signalled when topics were wanted or released since this reader's last Drain.
func (r *InterestReader) Changed() <-chan struct{} { return r.notify }

// Drain returns the topics newly wanted and newly released since this reader's previous Drain (since Follow,
// with every topic then in use counted as newly wanted, for the first).
func (r *InterestReader) Drain() (added, removed []string) {
	r.in.mu.Lock()
	defer r.in.mu.Unlock()
	added, removed = slices.Sorted(maps.Keys(r.added)), slices.Sorted(maps.Keys(r.removed))
	r.added, r.removed = nil, nil
	return added, removed
}

// Close stops following: the Interest forgets the reader and its undrained changes. Later Drains return nothing.
func (r *InterestReader) Close() {
	r.in.mu.Lock()
	defer r.in.mu.Unlock()
	delete(r.in.readers, r)
	r.added, r.removed = nil, nil
}

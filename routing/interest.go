package routing

import (
	"slices"
	"sync"
)

// Interest counts which topics consumers of the model use. A source in "topics in use" mode discovers and polls
// only these, so its load follows the topics used, not the topics that exist.
type Interest struct {
	mu      sync.Mutex
	refs    map[string]int
	added   map[string]struct{} // wanted since the last Drain, not yet released
	removed map[string]struct{} // released since the last Drain
	notify  chan struct{}
}

func newInterest() *Interest {
	return &Interest{refs: make(map[string]int), notify: make(chan struct{}, 1)}
}

// Want marks topics as used until the returned release function is called (once; later calls do nothing).
func (i *Interest) Want(topics ...string) (release func()) {
	topics = slices.Clone(topics)
	i.mu.Lock()
	for _, name := range topics {
		if i.refs[name]++; i.refs[name] == 1 {
			i.mark(&i.added, &i.removed, name)
		}
	}
	i.mu.Unlock()
	i.signal()
	var once sync.Once
	return func() {
		once.Do(func() {
			i.mu.Lock()
			for _, name := range topics {
				if i.refs[name]--; i.refs[name] == 0 {
					delete(i.refs, name)
					i.mark(&i.removed, &i.added, name)
				}
			}
			i.mu.Unlock()
			i.signal()
		})
	}
}

// mark records name in into, cancelling a pending opposite change in from.
func (i *Interest) mark(into, from *map[string]struct{}, name string) {
	if _, ok := (*from)[name]; ok {
		delete(*from, name)
		return
	}
	if *into == nil {
		*into = make(map[string]struct{})
	}
	(*into)[name] = struct{}{}
}

func (i *Interest) signal() {
	select {
	case i.notify <- struct{}{}:
	default:
	}
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
	out := make([]string, 0, len(i.refs))
	for name := range i.refs {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Changed is signalled when topics were wanted or released since the last Drain. Interest has one reader: the
// source that follows it.
func (i *Interest) Changed() <-chan struct{} { return i.notify }

// Drain returns the topics newly wanted and newly released since the previous Drain.
func (i *Interest) Drain() (added, removed []string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for name := range i.added {
		added = append(added, name)
	}
	for name := range i.removed {
		removed = append(removed, name)
	}
	i.added, i.removed = nil, nil
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
)

// Change is one coalesced change of the model, as the admin API reports it: every write to the table moves the model
// version by one, and the log records the writes made while it was busy as one change, at the version the last
// one reached. From is then the version the first of them reached (omitted when the change is one write, or the
// log's first): the change covers the model versions From to Version, and a topic's version (the model version
// at which it last changed) is one of them.
type Change struct {
	Time    time.Time `json:"time"`
	Version uint64    `json:"version"`
	From    uint64    `json:"from,omitempty"`
	// Topics is how many topics changed; Names lists them, up to changeNames.
	Topics     int      `json:"topics"`
	Names      []string `json:"names,omitempty"`
	BrokerSets int      `json:"brokerSets,omitempty"`
	Brokers    bool     `json:"brokers,omitempty"`
	Scopes     bool     `json:"scopes,omitempty"`
}

const (
	changeNames   = 20
	changeHistory = 1024
)

// ChangeLog keeps the latest changes of the model (a bounded ring), for `rocketctl describe` and the admin API.
type ChangeLog struct {
	mu      sync.Mutex
	entries []Change
	last    uint64 // the version of the last change recorded
	// changed is closed at the next change once a live view took it (Changed), then replaced.
	changed chan struct{}
	watched bool
}

// Changed returns a channel closed when the next change is recorded: live views (the dashboard) wait on it instead
// of polling the model.
func (l *ChangeLog) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	l.watched = true
	return l.changed
}

// Follow records the table's changes until ctx ends.
func (l *ChangeLog) Follow(ctx context.Context, table *routing.Table) {
	_ = table.Follow(ctx, l.add) // ends with ctx
}

func (l *ChangeLog) add(cs routing.ChangeSet) {
	c := Change{Time: time.Now().UTC().Truncate(time.Millisecond), Version: cs.Version, Topics: len(cs.Topics),
		BrokerSets: len(cs.BrokerSets), Brokers: cs.Brokers, Scopes: cs.Scopes}
	for name := range cs.Topics {
		c.Names = append(c.Names, name)
	}
	slices.Sort(c.Names)
	c.Names = c.Names[:min(len(c.Names), changeNames)]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last != 0 && cs.Version > l.last+1 {
		c.From = l.last + 1
	}
	l.last = cs.Version
	if len(l.entries) == changeHistory {
		l.entries = slices.Delete(l.entries, 0, 1)
	}
	l.entries = append(l.entries, c)
	if l.watched {
		close(l.changed)
		l.changed, l.watched = make(chan struct{}), false
	}
}

// Recent returns the recorded changes, newest last, that concern a topic ("" for every change): those naming it,
// and the one that covers the version at which it last changed (a change names at most changeNames topics).
func (l *ChangeLog) Recent(topic string, version uint64) []Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Change
	for _, c := range l.entries {
		if topic == "" || c.Covers(version) || slices.Contains(c.Names, topic) {
			out = append(out, c)
		}
	}
	return out
}

// Covers reports whether the change moved the model to the version (or through it, when coalesced).
func (c *Change) Covers(version uint64) bool {
	return version == c.Version || c.From != 0 && c.From <= version && version <= c.Version
}

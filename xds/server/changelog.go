package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
)

// Change is one coalesced change of the model, as the admin API reports it.
type Change struct {
	Time    time.Time `json:"time"`
	Version uint64    `json:"version"`
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
	if len(l.entries) == changeHistory {
		l.entries = slices.Delete(l.entries, 0, 1)
	}
	l.entries = append(l.entries, c)
}

// Recent returns the recorded changes, newest last, that concern a topic ("" for every change): those naming it,
// and the one at the version at which it last changed.
func (l *ChangeLog) Recent(topic string, version uint64) []Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Change
	for _, c := range l.entries {
		if topic == "" || c.Version == version || slices.Contains(c.Names, topic) {
			out = append(out, c)
		}
	}
	return out
}

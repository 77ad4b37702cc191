package cache

import "sync/atomic"

// activity is what the cache tells live views (the dashboard) about its streams without being polled: a signal
// when any stream opens, closes, is sent a response or decides on one, and running totals of responses and NACKs.
// The signal costs nothing while nobody waits for it: a channel is closed and replaced only after a reader took it.
type activity struct {
	changed chan struct{} // closed on the next stream event, when watched
	watched bool
	pushes  atomic.Uint64 // responses sent, every type and trigger
	nacks   atomic.Uint64 // responses rejected
}

// StreamsChanged returns a channel closed at the next event of any stream (opened, closed, sent a response, ACK or
// NACK): a live view re-reads Streams when it fires, and takes the next one. Events in between coalesce.
func (c *Cache) StreamsChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.activity.changed == nil {
		c.activity.changed = make(chan struct{})
	}
	c.activity.watched = true
	return c.activity.changed
}

// noteStreams signals a stream event to the live views; c.mu is held.
func (c *Cache) noteStreams() {
	if !c.activity.watched {
		return
	}
	close(c.activity.changed)
	c.activity.changed, c.activity.watched = make(chan struct{}), false
}

// Totals returns the responses the cache has had sent and the NACKs it has received since it started, for rates
// over time (the same counts as rocketpilot_xds_pushes_total and rocketpilot_xds_nacks_total summed over types).
func (c *Cache) Totals() (pushes, nacks uint64) {
	return c.activity.pushes.Load(), c.activity.nacks.Load()
}

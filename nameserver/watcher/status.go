package watcher

import (
	"sync/atomic"
	"time"
)

// AddrStatus is what the watcher knows of one NameServer.
type AddrStatus struct {
	Addr        string        `json:"addr"`
	Reachable   bool          `json:"reachable"`
	LastError   string        `json:"lastError,omitempty"`
	LastSuccess time.Time     `json:"lastSuccess,omitzero"`
	LastLatency time.Duration `json:"lastLatency"`
	Brokers     int           `json:"brokers"`
	Errors      int64         `json:"errors"`
}

// Status is a point-in-time view of a watcher.
type Status struct {
	Source      string       `json:"source"`
	Mode        Mode         `json:"mode"`
	Synced      bool         `json:"synced"`
	Topics      int          `json:"topics"` // topics followed
	NameServers []AddrStatus `json:"nameServers"`
	Queries     int64        `json:"queries"`   // topic queries, each to every NameServer
	Unchanged   int64        `json:"unchanged"` // route answers identical to the last applied, not decoded
	Removed     int64        `json:"removed"`   // topics withdrawn because every answering NameServer said 17
	Errors      int64        `json:"errors"`    // failed route requests
	// BrokerRequeues counts topic queries brought forward because a broker group they use changed.
	BrokerRequeues int64 `json:"brokerRequeues"`
	// LastDiscovery is when the broker tables (and topic lists) were last polled.
	LastDiscovery time.Time `json:"lastDiscovery,omitzero"`
}

type counters struct {
	discoveries    atomic.Int64
	queries        atomic.Int64
	unchanged      atomic.Int64
	removed        atomic.Int64
	errors         atomic.Int64
	brokerRequeues atomic.Int64
	lastDiscovery  atomic.Int64 // unix nanos
}

func (ns *nameServer) record(err error, latency time.Duration) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if err != nil {
		ns.status.Reachable = false
		ns.status.LastError = err.Error()
		ns.status.Errors++
		return
	}
	ns.status.Reachable = true
	ns.status.LastError = ""
	ns.status.LastSuccess = time.Now()
	if latency > 0 {
		ns.status.LastLatency = latency
	}
}

// Status returns the watcher's current status.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	n := len(w.topics)
	w.mu.Unlock()
	s := Status{
		Source:    w.opts.Source,
		Mode:      w.opts.Mode,
		Synced:    w.isSynced(),
		Topics:    n,
		Queries:   w.stats.queries.Load(),
		Unchanged: w.stats.unchanged.Load(),
		Removed:   w.stats.removed.Load(),
		Errors:    w.stats.errors.Load(),

		BrokerRequeues: w.stats.brokerRequeues.Load(),
	}
	if t := w.stats.lastDiscovery.Load(); t != 0 {
		s.LastDiscovery = time.Unix(0, t)
	}
	for _, ns := range w.ns {
		ns.mu.Lock()
		s.NameServers = append(s.NameServers, ns.status)
		ns.mu.Unlock()
	}
	return s
}

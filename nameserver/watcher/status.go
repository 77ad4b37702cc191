package watcher

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	// InvalidTopics counts the names of the last topic list that are not valid RocketMQ topics (skipped).
	InvalidTopics int `json:"invalidTopics,omitempty"`
}

// State says how a NameServer answers, in one word: Reachable, Unreachable (its last request failed) or Pending
// (not asked yet).
func (a AddrStatus) State() string {
	switch {
	case a.Reachable:
		return "Reachable"
	case a.LastError != "":
		return "Unreachable"
	}
	return "Pending"
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
	Errors      int64        `json:"errors"`    // failed route requests, undecodable answers included
	// InvalidNames counts the names skipped because they are not valid RocketMQ topics: each topic list counts
	// its own, and each topic asked for in use (in-use mode) once.
	InvalidNames int64 `json:"invalidNames,omitempty"`
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
	invalid        atomic.Int64
	brokerRequeues atomic.Int64
	lastDiscovery  atomic.Int64 // unix nanos
}

func (ns *nameServer) record(request string, err error, latency time.Duration) {
	ns.metrics.observe(ns.watcher, ns.addr, request, err, latency)
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

		InvalidNames:   w.stats.invalid.Load(),
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

// Metrics are the watchers' Prometheus series of requests to NameServers: one Metrics is shared by every watcher
// of a process (Options.Metrics) and registered once. The gauges of topics and brokers come from Status, read at
// scrape time (StatusCollector).
type Metrics struct {
	duration *prometheus.HistogramVec // source, nameserver, request
	errors   *prometheus.CounterVec   // source, nameserver, request
	invalid  *prometheus.CounterVec   // source, nameserver
}

// Request kinds in the metrics' request label.
const (
	requestRoute   = "route"   // 105 GET_ROUTEINFO_BY_TOPIC
	requestBrokers = "brokers" // 106 GET_BROKER_CLUSTER_INFO
	requestTopics  = "topics"  // 206 GET_ALL_TOPIC_LIST_FROM_NAMESERVER, or 224 per cluster
)

// NewMetrics returns unregistered Metrics.
func NewMetrics() *Metrics {
	labels := []string{"source", "nameserver", "request"}
	return &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rocketpilot_nameserver_request_duration_seconds",
			Help:    "Latency of NameServer requests that got an answer, by source, NameServer and request (route, brokers, topics).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_nameserver_request_errors_total",
			Help: "NameServer requests that failed (no answer, an error code other than TOPIC_NOT_EXIST, an undecodable body), by source, NameServer and request."}, labels),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_nameserver_invalid_names_total",
			Help: "Names in NameServer topic lists that are not valid RocketMQ topics and were skipped (each list counts its own), by source and NameServer."},
			[]string{"source", "nameserver"}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.duration.Describe(ch)
	m.errors.Describe(ch)
	m.invalid.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.duration.Collect(ch)
	m.errors.Collect(ch)
	m.invalid.Collect(ch)
}

func (m *Metrics) invalidNames(source, addr string, n int) {
	m.invalid.WithLabelValues(source, addr).Add(float64(n))
}

func (m *Metrics) observe(source, addr, request string, err error, latency time.Duration) {
	if err != nil {
		m.errors.WithLabelValues(source, addr, request).Inc()
		return
	}
	m.duration.WithLabelValues(source, addr, request).Observe(latency.Seconds())
}

// forget drops the series of a watcher that stopped.
func (m *Metrics) forget(source string) {
	m.duration.DeletePartialMatch(prometheus.Labels{"source": source})
	m.errors.DeletePartialMatch(prometheus.Labels{"source": source})
	m.invalid.DeletePartialMatch(prometheus.Labels{"source": source})
}

// StatusCollector reports, at scrape time, the topics, broker groups, reachability and sync of the watchers that
// statuses returns.
func StatusCollector(statuses func() []Status) prometheus.Collector {
	return &statusCollector{statuses: statuses,
		topics: prometheus.NewDesc("rocketpilot_nameserver_topics", "Topics a watcher follows, by source.", []string{"source"}, nil),
		brokers: prometheus.NewDesc("rocketpilot_nameserver_brokers", "Broker groups in a NameServer's last broker table, by source and NameServer.",
			[]string{"source", "nameserver"}, nil),
		up: prometheus.NewDesc("rocketpilot_nameserver_up", "1 when a NameServer answered its last request, by source and NameServer.",
			[]string{"source", "nameserver"}, nil),
		synced: prometheus.NewDesc("rocketpilot_nameserver_synced", "1 once a watcher finished its first complete poll, by source.", []string{"source"}, nil),
	}
}

type statusCollector struct {
	statuses                    func() []Status
	topics, brokers, up, synced *prometheus.Desc
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.topics
	ch <- c.brokers
	ch <- c.up
	ch <- c.synced
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.statuses() {
		ch <- prometheus.MustNewConstMetric(c.topics, prometheus.GaugeValue, float64(s.Topics), s.Source)
		ch <- prometheus.MustNewConstMetric(c.synced, prometheus.GaugeValue, bool01(s.Synced), s.Source)
		for _, ns := range s.NameServers {
			ch <- prometheus.MustNewConstMetric(c.brokers, prometheus.GaugeValue, float64(ns.Brokers), s.Source, ns.Addr)
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, bool01(ns.Reachable), s.Source, ns.Addr)
		}
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package cache

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TypeLabel is the short name of an xDS type in metrics: cluster, endpoint, listener, extension_config,
// rocketmq_route, or the type URL itself for a type rocketpilot does not serve.
func TypeLabel(typeURL string) string {
	switch typeURL {
	case translate.ClusterType:
		return "cluster"
	case translate.EndpointType:
		return "endpoint"
	case translate.ListenerType:
		return "listener"
	case translate.ExtensionType:
		return "extension_config"
	case translate.RouteType:
		return "rocketmq_route"
	}
	return "other"
}

// ServedTypes are the type URLs rocketpilot serves (Known).
var ServedTypes = []string{translate.ClusterType, translate.EndpointType, translate.ListenerType,
	translate.ExtensionType, translate.RouteType}

// metrics are the cache's own Prometheus series. The cache is their collector (Describe, Collect): counters and
// the histogram are kept as they happen, the gauges are read from the cache's state at scrape time.
type metrics struct {
	responses *prometheus.CounterVec   // type, trigger
	nacks     *prometheus.CounterVec   // type
	pushTime  *prometheus.HistogramVec // type
	streams   *prometheus.Desc         // type, protocol
	resources *prometheus.Desc         // type
	nodes     *prometheus.Desc
	retained  *prometheus.Desc // origin
	missing   *prometheus.Desc // type
	held      *prometheus.Desc // type
	// scopeRefused counts route subscriptions refused by strict scope.
	scopeRefused prometheus.Counter
	// byType holds each type label's series, resolved once: every response counts, and a label lookup hashes the
	// labels. Keyed by label, so that clients' unknown type URLs share "other". Used under the cache's lock only.
	byType map[string]*typeSeries
}

// typeSeries are the series of one type URL.
type typeSeries struct {
	changes, requests, nacks prometheus.Counter
	pushTime                 prometheus.Observer
}

func (m *metrics) of(typeURL string) *typeSeries {
	l := TypeLabel(typeURL)
	ts := m.byType[l]
	if ts == nil {
		ts = &typeSeries{changes: m.responses.WithLabelValues(l, "change"), requests: m.responses.WithLabelValues(l, "request"),
			nacks: m.nacks.WithLabelValues(l), pushTime: m.pushTime.WithLabelValues(l)}
		m.byType[l] = ts
	}
	return ts
}

func newMetrics() *metrics {
	m := &metrics{
		scopeRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "rocketpilot_xds_scope_refused_total",
			Help: "Topics subscribed to by name that the node's strict scope does not grant: answered as absent, never served."}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_xds_pushes_total",
			Help: "xDS responses sent, by type and by what caused them: a change of the model (change) or a request (request; a change that found a state-of-the-world stream between requests goes with its next request, and counts here)."},
			[]string{"type", "trigger"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_xds_nacks_total",
			Help: "xDS responses rejected by the client (a request with error_detail for a response it had not decided on yet), by type."},
			[]string{"type"}),
		pushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rocketpilot_xds_push_duration_seconds",
			Help:    "From the cache taking a change of the model to the response it causes being handed to the stream, by type (the coalescing window comes before).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}},
			[]string{"type"}),
		streams: prometheus.NewDesc("rocketpilot_xds_streams", "Open xDS streams, by the type they carry and protocol (delta or sotw); an ADS stream counts once per type.",
			[]string{"type", "protocol"}, nil),
		resources: prometheus.NewDesc("rocketpilot_xds_resources", "Resources the cache holds, by type: clusters and endpoints of every broker set (retained ones included), routes of the topics in use, listener and ECDS configs of the node scopes.",
			[]string{"type"}, nil),
		nodes: prometheus.NewDesc("rocketpilot_xds_nodes", "Connected nodes (node id and metadata).", nil, nil),
		retained: prometheus.NewDesc("rocketpilot_xds_retained_clusters", "Clusters nodes keep after they left their view, as (node, cluster) records, by origin: view (left the node's view here) or declared (declared by a reconnecting client, never served by this replica).",
			[]string{"origin"}, nil),
	}
	m.missing = prometheus.NewDesc("rocketpilot_xds_sidecars_missing_extension", "Streams whose standing NACK of a type says the sidecar lacks an extension the config needs (an Envoy without the contrib RocketMQ filter, or older than 1.28), by type: a sidecar problem, never blamed on a TopicRoute.",
		[]string{"type"}, nil)
	m.held = prometheus.NewDesc("rocketpilot_xds_configs_held", "Streams whose next config make-before-break holds back until the node accepts the clusters it names and their endpoints, by type.",
		[]string{"type"}, nil)
	m.byType = map[string]*typeSeries{}
	for _, t := range ServedTypes { // every counter present from the start, at zero
		m.of(t)
	}
	return m
}

// Describe implements prometheus.Collector.
func (c *Cache) Describe(ch chan<- *prometheus.Desc) {
	c.metrics.responses.Describe(ch)
	c.metrics.nacks.Describe(ch)
	c.metrics.pushTime.Describe(ch)
	c.metrics.scopeRefused.Describe(ch)
	ch <- c.metrics.streams
	ch <- c.metrics.resources
	ch <- c.metrics.nodes
	ch <- c.metrics.retained
	ch <- c.metrics.missing
	ch <- c.metrics.held
}

// Collect implements prometheus.Collector. Its gauges cost a walk over the streams, under the cache's lock.
func (c *Cache) Collect(ch chan<- prometheus.Metric) {
	m := c.metrics
	m.responses.Collect(ch)
	m.nacks.Collect(ch)
	m.pushTime.Collect(ch)
	m.scopeRefused.Collect(ch)
	type key struct{ typ, protocol string }
	streams, missing, held := map[key]int{}, map[string]int{}, map[string]int{}
	for _, t := range ServedTypes {
		streams[key{TypeLabel(t), "delta"}], streams[key{TypeLabel(t), "sotw"}] = 0, 0
		missing[TypeLabel(t)], held[TypeLabel(t)] = 0, 0
	}
	c.mu.Lock()
	for _, st := range c.streams {
		if st.id < 0 {
			continue // a request without the server callbacks: no stream
		}
		protocol := "sotw"
		if st.delta {
			protocol = "delta"
		}
		for typeURL, ts := range st.types {
			streams[key{TypeLabel(typeURL), protocol}]++
			if ts.missingExtension != "" {
				missing[TypeLabel(typeURL)]++
			}
			if c.waitingFor(st, typeURL) != nil {
				held[TypeLabel(typeURL)]++
			}
		}
	}
	routes := 0
	for _, e := range c.topics {
		if e.route != nil {
			routes++
		}
	}
	clusters, scopes, nodes := len(c.clusters), len(c.scopes), len(c.nodes)
	left, declared := c.retentionRecords()
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(m.retained, prometheus.GaugeValue, float64(left), "view")
	ch <- prometheus.MustNewConstMetric(m.retained, prometheus.GaugeValue, float64(declared), "declared")
	for k, n := range streams {
		ch <- prometheus.MustNewConstMetric(m.streams, prometheus.GaugeValue, float64(n), k.typ, k.protocol)
	}
	for typeURL, n := range map[string]int{translate.ClusterType: clusters, translate.EndpointType: clusters,
		translate.RouteType: routes, translate.ExtensionType: scopes, translate.ListenerType: scopes} {
		ch <- prometheus.MustNewConstMetric(m.resources, prometheus.GaugeValue, float64(n), TypeLabel(typeURL))
	}
	ch <- prometheus.MustNewConstMetric(m.nodes, prometheus.GaugeValue, float64(nodes))
	for typ, n := range missing {
		ch <- prometheus.MustNewConstMetric(m.missing, prometheus.GaugeValue, float64(n), typ)
	}
	for typ, n := range held {
		ch <- prometheus.MustNewConstMetric(m.held, prometheus.GaugeValue, float64(n), typ)
	}
}

// sent counts a response handed to a stream; pushedAt is when the change that caused it reached the cache, zero
// for the answer to a request.
func (m *metrics) sent(typeURL string, pushedAt time.Time) {
	ts := m.of(typeURL)
	if pushedAt.IsZero() {
		ts.requests.Inc()
		return
	}
	ts.changes.Inc()
	ts.pushTime.Observe(time.Since(pushedAt).Seconds())
}

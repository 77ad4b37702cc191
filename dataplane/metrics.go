package dataplane

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Metrics are the proxy's Prometheus collectors. Register them with Collectors.
type Metrics struct {
	requests    *prometheus.CounterVec   // by request code and result
	latency     *prometheus.HistogramVec // request to answer, through the broker, by request code
	bytes       *prometheus.CounterVec   // application side, by direction
	connections *prometheus.GaugeVec     // open connections, by side
	routes      prometheus.GaugeFunc
}

// The results a request is counted under.
const (
	resultSuccess     = "success"      // the broker answered SUCCESS
	resultBrokerError = "broker_error" // the broker answered another code
	resultRefused     = "refused"      // the proxy answered it itself: no route, unreachable broker, bad handle
	resultOneway      = "oneway"       // forwarded, no answer expected
	resultRetried     = "retried"      // refused by its broker (NO_PERMISSION) and sent to another group
)

func newMetrics(p *Proxy) *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_sidecar_requests_total",
			Help: "Application requests by RocketMQ request code and result: success, broker_error, refused (answered by the sidecar), oneway, retried (refused by its broker, sent to another group: counted again with its second answer)."},
			[]string{"code", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rocketpilot_sidecar_upstream_seconds",
			Help:    "Time from forwarding a request to the broker's answer, by request code.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_sidecar_bytes_total",
			Help: "Frame bytes on the application's side, by direction (in: from the application)."}, []string{"direction"}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rocketpilot_sidecar_connections",
			Help: "Open connections, by side: application (broker group ports) or broker."}, []string{"side"}),
		routes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_sidecar_routes",
			Help: "Topics whose served route the sidecar holds."}, func() float64 {
			p.mu.Lock()
			defer p.mu.Unlock()
			n := 0
			for _, c := range p.routes {
				if c.r != nil { // not the topics the control plane said do not exist
					n++
				}
			}
			return float64(n)
		}),
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.bytes, m.connections, m.routes}
}

func codeLabel(code int32) string { return strconv.Itoa(int(code)) }

func (m *Metrics) answered(code int32, respCode int32, since time.Time) {
	result := resultSuccess
	if respCode != remoting.Success {
		result = resultBrokerError
	}
	m.requests.WithLabelValues(codeLabel(code), result).Inc()
	m.latency.WithLabelValues(codeLabel(code)).Observe(time.Since(since).Seconds())
}

func (m *Metrics) count(code int32, result string) {
	m.requests.WithLabelValues(codeLabel(code), result).Inc()
}

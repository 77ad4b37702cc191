package dataplane

import (
	"slices"
	"strconv"
	"strings"
	"sync"
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
	pop         *prometheus.CounterVec // Pop mode, by consumer group and event
	popInflight *prometheus.GaugeVec   // Pop mode: handed out, not acked, by consumer group

	// answers holds each request code's collectors for answered requests, looked up once: every message passes
	// through answered, and a vector's lookup by label values costs as much as much of the proxy's own work.
	answers sync.Map // int32 → *codeAnswers
}

// codeAnswers are one request code's collectors for answered requests.
type codeAnswers struct {
	success, brokerError prometheus.Counter
	latency              prometheus.Observer
}

// The results a request is counted under.
const (
	resultSuccess     = "success"      // the broker answered SUCCESS
	resultBrokerError = "broker_error" // the broker answered another code
	resultRefused     = "refused"      // the proxy answered it itself: no route, unreachable broker, bad handle
	resultOneway      = "oneway"       // forwarded, no answer expected
	resultRetried     = "retried"      // refused by its broker (NO_PERMISSION) and sent to another group
	resultPop         = "pop"          // served by the sidecar in Pop mode (pull as pop, commit as ack, ...)
)

// Pop mode events, counted per consumer group.
const (
	popPopped      = "popped"      // handed out to the application
	popRedelivered = "redelivered" // of those, popped before (their invisible time ran out, or sent back)
	popAcked       = "acked"       // acked after the application committed past them
	popAckFailed   = "ack_failed"  // an ack the broker refused or could not be sent: the message comes back
	popSentBack    = "sent_back"   // sent back by the application: to the retry delay, or the dead-letter queue
	popReleased    = "released"    // let go un-acked (a closed connection, a queue taken up again, a pull given up): back after the invisible time
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
			Help: "Topics whose served route the sidecar holds."}, func() float64 { return float64(p.RoutesHeld()) }),
		pop: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_sidecar_pop_messages_total",
			Help: "Pop mode: messages by consumer group and event: popped, redelivered (of the popped, handed out before), acked, ack_failed, sent_back (to the retry delay or the dead-letter queue), released (let go un-acked: a closed connection, a queue taken up again, a pull given up; back after the invisible time)."},
			[]string{"group", "event"}),
		popInflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rocketpilot_sidecar_pop_inflight",
			Help: "Pop mode: messages handed out to the application and not yet committed, by consumer group."}, []string{"group"}),
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.latency, m.bytes, m.connections, m.routes, m.pop, m.popInflight}
}

func codeLabel(code int32) string { return strconv.Itoa(int(code)) }

func (m *Metrics) answered(code int32, respCode int32, since time.Time) {
	a, ok := m.answers.Load(code)
	if !ok {
		label := codeLabel(code)
		a, _ = m.answers.LoadOrStore(code, &codeAnswers{success: m.requests.WithLabelValues(label, resultSuccess),
			brokerError: m.requests.WithLabelValues(label, resultBrokerError), latency: m.latency.WithLabelValues(label)})
	}
	ca := a.(*codeAnswers)
	if respCode == remoting.Success {
		ca.success.Inc()
	} else {
		ca.brokerError.Inc()
	}
	ca.latency.Observe(time.Since(since).Seconds())
}

// observe records the latency of a request of the sidecar's own.
func (m *Metrics) observe(code int32, since time.Time) {
	m.latency.WithLabelValues(codeLabel(code)).Observe(time.Since(since).Seconds())
}

func (m *Metrics) count(code int32, result string) {
	m.requests.WithLabelValues(codeLabel(code), result).Inc()
}

// PopStats are a consumer group's Pop mode counts on this sidecar.
type PopStats struct {
	Group       string `json:"group"`
	Popped      int64  `json:"popped"`
	Redelivered int64  `json:"redelivered"`
	Acked       int64  `json:"acked"`
	AckFailed   int64  `json:"ackFailed"`
	SentBack    int64  `json:"sentBack"`
	Released    int64  `json:"released"`
	InFlight    int64  `json:"inFlight"`
}

// popEvent counts n messages of a group's Pop mode event.
func (p *Proxy) popEvent(group, event string, n int) {
	if n == 0 {
		return
	}
	p.metrics.pop.WithLabelValues(group, event).Add(float64(n))
	p.popMu.Lock()
	defer p.popMu.Unlock()
	s := p.popStatsLocked(group)
	switch event {
	case popPopped:
		s.Popped += int64(n)
	case popRedelivered:
		s.Redelivered += int64(n)
	case popAcked:
		s.Acked += int64(n)
	case popAckFailed:
		s.AckFailed += int64(n)
	case popSentBack:
		s.SentBack += int64(n)
	case popReleased:
		s.Released += int64(n)
	}
}

// popInflight moves a group's count of messages handed out and not acked.
func (p *Proxy) popInflight(group string, delta int) {
	if delta == 0 {
		return
	}
	p.metrics.popInflight.WithLabelValues(group).Add(float64(delta))
	p.popMu.Lock()
	p.popStatsLocked(group).InFlight += int64(delta)
	p.popMu.Unlock()
}

func (p *Proxy) popStatsLocked(group string) *PopStats {
	s := p.popStats[group]
	if s == nil {
		s = &PopStats{Group: group}
		p.popStats[group] = s
	}
	return s
}

// PopStats returns the Pop mode counts of every consumer group the sidecar served in Pop mode, by group name.
func (p *Proxy) PopStats() []PopStats {
	p.popMu.Lock()
	defer p.popMu.Unlock()
	out := make([]PopStats, 0, len(p.popStats))
	for _, s := range p.popStats {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b PopStats) int { return strings.Compare(a.Group, b.Group) })
	return out
}

// singleAcks reports whether a broker group takes acks one message at a time only.
func (p *Proxy) singleAcks(broker string) bool {
	p.popMu.Lock()
	defer p.popMu.Unlock()
	return p.noBatch[broker]
}

// noBatchAcks remembers that a broker group does not know BATCH_ACK_MESSAGE (a broker before 5.1.3).
func (p *Proxy) noBatchAcks(broker string) {
	p.popMu.Lock()
	defer p.popMu.Unlock()
	if p.noBatch == nil {
		p.noBatch = map[string]bool{}
	}
	if !p.noBatch[broker] {
		p.noBatch[broker] = true
		p.log.Info("broker group does not take batch acks: acking one message at a time", "broker", broker)
	}
}

// noteConsumers remembers the consumer groups of a heartbeat, for connections that have not had one.
func (p *Proxy) noteConsumers(groups map[string]consumerInfo) {
	p.popMu.Lock()
	defer p.popMu.Unlock()
	if p.consumers == nil {
		p.consumers = map[string]consumerInfo{}
	}
	for g, info := range groups {
		p.consumers[g] = info
	}
}

// consumer is what the last heartbeat on any connection said of a group.
func (p *Proxy) consumer(group string) (consumerInfo, bool) {
	p.popMu.Lock()
	defer p.popMu.Unlock()
	info, ok := p.consumers[group]
	return info, ok
}

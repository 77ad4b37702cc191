package server

import (
	"context"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/stats"

	"github.com/rocketpilot/rocketpilot/xds/cache"
)

// WireStats counts the bytes of xDS responses as they leave on the wire (compressed when the stream is), by type.
// It is a gRPC stats handler (Options.Stats) and a Prometheus collector. gRPC measures every message it sends
// anyway, so counting costs no extra marshalling.
type WireStats struct {
	sent     *prometheus.CounterVec
	received *prometheus.CounterVec
	// bySent and byReceived are each type label's counter, resolved once (HandleRPC runs for every message, on
	// every stream's goroutine); read-only after NewWireStats.
	bySent, byReceived map[string]prometheus.Counter
}

// NewWireStats returns an unregistered WireStats.
func NewWireStats() *WireStats {
	s := &WireStats{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_xds_sent_bytes_total",
			Help: "Bytes of xDS responses sent on the wire (after compression, with gRPC framing), by type."}, []string{"type"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_xds_received_bytes_total",
			Help: "Bytes of xDS requests received on the wire, by type."}, []string{"type"}),
		bySent: map[string]prometheus.Counter{}, byReceived: map[string]prometheus.Counter{},
	}
	for _, t := range append(slices.Clone(cache.ServedTypes), "") { // "" stands for every other type

		l := cache.TypeLabel(t)
		s.bySent[l], s.byReceived[l] = s.sent.WithLabelValues(l), s.received.WithLabelValues(l)
	}
	return s
}

func (s *WireStats) Describe(ch chan<- *prometheus.Desc) {
	s.sent.Describe(ch)
	s.received.Describe(ch)
}
func (s *WireStats) Collect(ch chan<- prometheus.Metric) { s.sent.Collect(ch); s.received.Collect(ch) }

func (s *WireStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (s *WireStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (s *WireStats) HandleConn(context.Context, stats.ConnStats)                       {}

// HandleRPC counts one message's wire bytes under the type it carries.
func (s *WireStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	switch p := st.(type) {
	case *stats.OutPayload:
		if t, ok := typeOf(p.Payload); ok {
			s.bySent[cache.TypeLabel(t)].Add(float64(p.WireLength))
		}
	case *stats.InPayload:
		if t, ok := typeOf(p.Payload); ok {
			s.byReceived[cache.TypeLabel(t)].Add(float64(p.WireLength))
		}
	}
}

func typeOf(msg any) (string, bool) {
	switch m := msg.(type) {
	case *discovery.DiscoveryResponse:
		return m.GetTypeUrl(), true
	case *discovery.DeltaDiscoveryResponse:
		return m.GetTypeUrl(), true
	case *discovery.DiscoveryRequest:
		return m.GetTypeUrl(), true
	case *discovery.DeltaDiscoveryRequest:
		return m.GetTypeUrl(), true
	}
	return "", false
}

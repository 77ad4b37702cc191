package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Admission rate-limits new xDS streams. After a control-plane restart every sidecar reconnects at once, and each
// new stream costs a full first answer; admitting them at a bounded rate keeps the open streams' pushes flowing
// (as Istio's PILOT_MAX_REQUESTS_PER_SECOND does). A stream waits up to MaxWait for its turn, then gets
// RESOURCE_EXHAUSTED and retries with its own backoff. It is a Prometheus collector.
type Admission struct {
	limiter  *rate.Limiter
	maxWait  time.Duration
	results  *prometheus.CounterVec
	admitted prometheus.Counter
	rejected prometheus.Counter
	wait     prometheus.Histogram
}

// NewAdmission admits perSecond new streams a second on average, burst at once; a stream waits at most maxWait.
func NewAdmission(perSecond float64, burst int, maxWait time.Duration) *Admission {
	a := &Admission{
		limiter: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1)),
		maxWait: maxWait,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_xds_stream_admissions_total",
			Help: "New xDS streams by admission result: admitted, or rejected by the admission rate limit."}, []string{"result"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rocketpilot_xds_stream_admission_wait_seconds",
			Help:    "How long admitted xDS streams waited for the admission rate limit.",
			Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30}}),
	}
	a.admitted, a.rejected = a.results.WithLabelValues("admitted"), a.results.WithLabelValues("rejected")
	return a
}

// Admit waits for a stream's turn. It fails when the turn would come after maxWait, or ctx ends first.
func (a *Admission) Admit(ctx context.Context) error {
	start := time.Now()
	r := a.limiter.Reserve()
	if d := r.Delay(); d > a.maxWait {
		r.Cancel()
		a.rejected.Inc()
		return status.Errorf(codes.ResourceExhausted, "xDS stream admission: more than %g new streams a second; retry later", float64(a.limiter.Limit()))
	} else if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			r.Cancel()
			a.rejected.Inc()
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	a.admitted.Inc()
	a.wait.Observe(time.Since(start).Seconds())
	return nil
}

func (a *Admission) interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := a.Admit(ss.Context()); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

func (a *Admission) Describe(ch chan<- *prometheus.Desc) { a.results.Describe(ch); a.wait.Describe(ch) }
func (a *Admission) Collect(ch chan<- prometheus.Metric) { a.results.Collect(ch); a.wait.Collect(ch) }

package controllers

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Metrics are the reconcilers' Prometheus series, shared by the managers of a process (a manager that lost its
// lease is replaced by a new one) and registered once.
type Metrics struct {
	errors *prometheus.CounterVec // kind
}

// NewMetrics returns unregistered Metrics.
func NewMetrics() *Metrics {
	m := &Metrics{errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_reconcile_errors_total",
		Help: "Reconciles that returned an error (and were retried with backoff), by kind."}, []string{"kind"})}
	for _, kind := range []string{"nameserversource", "topicroute", "topicbinding"} {
		m.errors.WithLabelValues(kind) // present from the start, at zero
	}
	return m
}

func (m *Metrics) Describe(ch chan<- *prometheus.Desc) { m.errors.Describe(ch) }
func (m *Metrics) Collect(ch chan<- prometheus.Metric) { m.errors.Collect(ch) }

// counted counts the errors of a reconciler.
type counted struct {
	ctrlReconciler
	errors prometheus.Counter
}

func (c counted) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	res, err := c.ctrlReconciler.Reconcile(ctx, req)
	if err != nil {
		c.errors.Inc()
	}
	return res, err
}

// FileStatusCollector reports, at scrape time, how many documents of the file source are accepted and rejected.
func FileStatusCollector(f *FileSource) prometheus.Collector {
	return &fileCollector{f: f, desc: prometheus.NewDesc("rocketpilot_config_resources",
		"Custom resources read from the --config directory, by state (accepted or rejected).", []string{"state"}, nil)}
}

type fileCollector struct {
	f    *FileSource
	desc *prometheus.Desc
}

func (c *fileCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *fileCollector) Collect(ch chan<- prometheus.Metric) {
	var accepted, rejected float64
	for _, st := range c.f.Status() {
		if st.Accepted {
			accepted++
		} else {
			rejected++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, accepted, "accepted")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, rejected, "rejected")
}

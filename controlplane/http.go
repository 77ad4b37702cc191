package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rocketpilot/rocketpilot/dashboard"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/workloadca"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// AdminConfig is the admin API and the metrics endpoint.
type AdminConfig struct {
	// Addr is the admin API's listen address (none when empty).
	Addr string
	// MetricsAddr is where /metrics is served (on Addr when empty).
	MetricsAddr string
	// Operators are the clients allowed the debug and write endpoints (see server.AdminGuard).
	Operators []string
	// Handlers are more endpoints on the admin address by pattern (the log level, Go's profiles), guarded as
	// the admin API's debug endpoints are.
	Handlers map[string]http.Handler
	// Collectors and Gatherers are metrics besides the control plane's own (the process's, the build's, the
	// controllers').
	Collectors []prometheus.Collector
	Gatherers  prometheus.Gatherers
	// Version is what GET /api/v1/version answers.
	Version string
	// ChartPeriod is the period of one point of the dashboard's charts (5s when zero).
	ChartPeriod time.Duration
	// Certificates, when set, is the workload CA sidecars get their client certificates from, served on
	// CertificatesAddr over TLS without a client certificate (a sidecar has none yet: the CA authenticates it by its
	// service account token).
	Certificates     *workloadca.Authority
	CertificatesAddr string
}

// httpListeners are the admin and metrics listeners, opened by New.
type httpListeners struct {
	admin, metrics, certificates net.Listener
	tls                          bool
	mutualTLS                    bool
}

func listenHTTP(cfg AdminConfig, certs *tlsreload.Reloader) (*httpListeners, error) {
	h := &httpListeners{tls: certs != nil, mutualTLS: certs != nil && certs.MutualTLS()}
	var err error
	if h.admin, err = listen(cfg.Addr, "admin", certs); err != nil {
		return nil, err
	}
	if h.metrics, err = listen(cfg.MetricsAddr, "metrics", certs); err != nil {
		h.close()
		return nil, err
	}
	if cfg.Certificates != nil {
		if certs == nil {
			h.close()
			return nil, errors.New("the workload CA is served over TLS only: it needs the server certificate")
		}
		lis, err := net.Listen("tcp", cfg.CertificatesAddr)
		if err != nil {
			h.close()
			return nil, fmt.Errorf("workload CA listener: %w", err)
		}
		h.certificates = tls.NewListener(lis, certs.ServerConfig(tls.NoClientCert, "http/1.1"))
	}
	return h, nil
}

// listen opens an HTTP listener (none for an empty address), TLS when certs are configured: once they are, no
// port serves plaintext.
func listen(addr, what string, certs *tlsreload.Reloader) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", what, err)
	}
	if certs != nil {
		// Client certificates are verified when given; AdminGuard decides which paths need one.
		lis = tls.NewListener(lis, certs.ServerConfig(tls.VerifyClientCertIfGiven, "http/1.1"))
	}
	return lis, nil
}

func (h *httpListeners) close() {
	for _, l := range []net.Listener{h.admin, h.metrics, h.certificates} {
		if l != nil {
			l.Close()
		}
	}
}

// serveHTTP serves the admin API (with /metrics unless it has a listener of its own) and the metrics endpoint
// until ctx ends.
func (cp *ControlPlane) serveHTTP(ctx context.Context) {
	h, cfg := cp.http, cp.cfg.Admin
	if h.certificates != nil {
		cp.serve(ctx, "certificates", h.certificates, cfg.Certificates.Handler())
		cp.log.Info("serving the workload CA", "addr", h.certificates.Addr().String())
	}
	if h.admin == nil && h.metrics == nil {
		return
	}
	metrics := cp.metricsHandler()
	if h.admin != nil {
		mux := http.NewServeMux()
		admin := cp.admin()
		api := admin.Handler()
		mux.Handle("/api/", api)
		mux.Handle("/healthz", api)
		mux.Handle("/readyz", api)
		// Everything else on the admin address is the dashboard, read-only and under the same guard.
		mux.Handle("/", cp.dashboard(ctx, admin).Handler())
		for _, pattern := range slices.Sorted(maps.Keys(cfg.Handlers)) {
			mux.Handle(pattern, cfg.Handlers[pattern])
		}
		if h.metrics == nil {
			mux.Handle("GET /metrics", metrics)
		}
		cp.serve(ctx, "admin", h.admin, server.AdminGuard(mux, h.mutualTLS, cfg.Operators))
		cp.log.Info("serving the admin API", "addr", h.admin.Addr().String(), "tls", h.tls)
	}
	if h.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics)
		cp.serve(ctx, "metrics", h.metrics, mux)
		cp.log.Info("serving metrics", "addr", h.metrics.Addr().String())
	}
}

// dashboard is the web dashboard over the admin API's views, its chart recorder running until ctx ends.
func (cp *ControlPlane) dashboard(ctx context.Context, admin *server.Admin) *dashboard.Dashboard {
	cfg := dashboard.Config{Admin: admin, Sources: cp.statuses, SampleEvery: cp.cfg.Admin.ChartPeriod}
	if cp.files != nil {
		cfg.Files = cp.files.Status
	}
	d := dashboard.New(cfg)
	cp.wg.Go(func() { d.Run(ctx) })
	return d
}

func (cp *ControlPlane) serve(ctx context.Context, component string, lis net.Listener, h http.Handler) {
	log := cp.log.With("component", component)
	// Its errors (failed TLS handshakes: a client without a certificate, a plaintext request) are the clients'.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	cp.wg.Go(func() { hs.Serve(lis) })
	cp.wg.Go(func() {
		<-ctx.Done()
		hs.Close()
	})
}

// metricsHandler serves the control plane's metrics from a registry of its own (one per control plane, so that
// tests can run several in one process) and the configured ones.
func (cp *ControlPlane) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(cp.collectors()...)
	reg.MustRegister(cp.cfg.Admin.Collectors...)
	gatherers := append(prometheus.Gatherers{reg}, cp.cfg.Admin.Gatherers...)
	// A series that fails to gather is logged and left out; the rest is still served.
	return promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
		ErrorLog: promLogger{cp.log.With("component", "metrics")}})
}

// promLogger logs promhttp's gather errors.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Error("metrics gather failed", "err", fmt.Sprint(v...)) }

package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// metricsHandler serves the process's Prometheus metrics: rocketpilot's own registry (one per run, so that
// in-process tests can run serve again), and with --kubernetes controller-runtime's (workqueues, API clients,
// leader election).
func (o *serveOptions) metricsHandler(log *slog.Logger, xc *cache.Cache, wire *server.WireStats, admission *server.Admission, ns *watcher.Metrics,
	statuses func() []watcher.Status, reconcile *controllers.Metrics, files *controllers.FileSource) http.Handler {
	reg := prometheus.NewRegistry()
	if !o.kube.enabled { // controller-runtime's registry has the Go and process collectors already
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	reg.MustRegister(
		xc, wire, admission, ns, watcher.StatusCollector(statuses), reconcile,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_build_info", Help: "1, labelled with the version and Go version.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_leader",
			Help: "1 while this replica writes the custom resources' status and events (it holds the Lease, or leader election is off); 0 otherwise and without --kubernetes."},
			o.kube.leading),
	)
	if files != nil {
		reg.MustRegister(controllers.FileStatusCollector(files))
	}
	gatherers := prometheus.Gatherers{reg}
	if o.kube.enabled {
		gatherers = append(gatherers, ctrlmetrics.Registry)
	}
	// A series that fails to gather is logged and left out; the rest is still served.
	return promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: promLogger{log}})
}

// promLogger logs promhttp's gather errors.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Error("metrics gather failed", "err", fmt.Sprint(v...)) }

// logLevelHandler reads (GET) and sets (PUT, the level as the body: debug, info, warn or error) the log level.
func logLevelHandler(level *slog.LevelVar, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut:
			body, err := io.ReadAll(io.LimitReader(r.Body, 64))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var l slog.Level
			if err := l.UnmarshalText([]byte(strings.TrimSpace(string(body)))); err != nil {
				http.Error(w, fmt.Sprintf("%v: want debug, info, warn or error", err), http.StatusBadRequest)
				return
			}
			log.Info("log level changed", "from", level.Level().String(), "to", l.String(), "by", server.ClientName(r))
			level.Set(l)
		default:
			w.Header().Set("Allow", "GET, PUT")
			http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintln(w, strings.ToLower(level.Level().String()))
	})
}

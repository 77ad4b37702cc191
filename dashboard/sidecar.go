package dashboard

import (
	"fmt"
	"html/template"
	"net/http"
	"reflect"
	"time"
)

// Sidecar is the Go sidecar's own page, at / on its admin address: what GET /api/v1/sidecar says (its node, its
// control plane, readiness, the broker groups at their ports, routes held, Pop mode per group), as a page. It is
// live as the control plane's pages are; its feed is the status itself, a few numbers compared every period.
//
// The status is a sidecaradmin.Sidecar, taken as any: that package imports the data plane, whose tests import the
// control plane, which imports this package.
type Sidecar struct {
	status func() any
	every  time.Duration
	page   *template.Template
	static http.Handler
}

// NewSidecar returns the sidecar's page over status, whose changes reach open pages within every (1s when zero).
func NewSidecar(status func() any, every time.Duration) *Sidecar {
	if every <= 0 {
		every = time.Second
	}
	return &Sidecar{status: status, every: every, static: staticHandler(),
		page: template.Must(template.New("sidecar").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/partials.html", "templates/sidecar.html"))}
}

var sidecarMenu = []menuItem{{"sidecar", "/", "Sidecar"}, {"metrics", "/metrics", "Metrics"}}

// Handler serves the page, its events and the assets; any other path is answered 404.
func (s *Sidecar) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, r, http.StatusOK, s.page, page{Brand: "rocketpilot sidecar", Menu: sidecarMenu, API: "/api/v1/sidecar",
			Title: "Sidecar", Nav: "sidecar", Live: "sidecar", Data: s.status()})
	})
	mux.HandleFunc("GET /ui/events", s.events)
	mux.Handle("GET /ui/static/", s.static)
	return mux
}

// events sends "sidecar" whenever the status differs from the last one sent, checked every period.
func (s *Sidecar) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	fmt.Fprint(w, "retry: 2000\n\n")
	flusher.Flush()
	last := s.status()
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		now := s.status()
		if reflect.DeepEqual(now, last) {
			continue
		}
		last = now
		if _, err := fmt.Fprintf(w, "event: sidecar\ndata: %d\n\n", n); err != nil {
			return
		}
		flusher.Flush()
	}
}

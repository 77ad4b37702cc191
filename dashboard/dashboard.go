// Package dashboard is the read-only web dashboard rocketpilot serves at / on its admin address: an overview,
// topics with search and paging, a topic's chain (routes → clusters → brokers → proxies) as a diagram, proxies
// with their sync state and NACKs, sources, and the change log.
//
// It renders on the server (html/template, SVG drawn in Go), so every page works without JavaScript; a small
// embedded script keeps a page live by listening to /ui/events (server-sent events) and re-fetching the page's
// live region when what it shows changed. The events come from the same change feeds as the admin API (the
// ChangeLog, the cache's stream events, the recorder's samples): nothing polls the model. Every asset is embedded
// (go:embed); the dashboard never writes, and the admin listener's access rules (server.AdminGuard) apply to it as
// to the admin API.
package dashboard

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

//go:embed templates static
var assets embed.FS

// Config is what the dashboard reads. Admin is required; the rest is optional.
type Config struct {
	Admin *server.Admin
	// Sources are the NameServer watchers' statuses; Files the documents of the file source (--config).
	Sources func() []watcher.Status
	Files   func() []controllers.FileResourceStatus
	// SampleEvery is the recorder's period (5s), Samples how many it keeps (120: ten minutes at 5s).
	SampleEvery time.Duration
	Samples     int
	// PageSize is how many topics or proxies a page lists (50).
	PageSize int
}

// Dashboard serves the pages. Run records the charts' samples; without it the charts stay empty.
type Dashboard struct {
	cfg      Config
	pages    map[string]*template.Template
	recorder *recorder
	static   http.Handler
}

// New returns a dashboard over cfg.
func New(cfg Config) *Dashboard {
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 5 * time.Second
	}
	if cfg.Samples <= 0 {
		cfg.Samples = 120
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 50
	}
	d := &Dashboard{cfg: cfg, pages: map[string]*template.Template{}, recorder: newRecorder(cfg.Samples)}
	for _, page := range []string{"overview", "topics", "topic", "proxies", "proxy", "sources", "changes", "notfound"} {
		d.pages[page] = template.Must(template.New(page).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/partials.html", "templates/"+page+".html"))
	}
	d.static = staticHandler()
	return d
}

// Run samples the counters the charts draw every SampleEvery until ctx ends.
func (d *Dashboard) Run(ctx context.Context) {
	d.recorder.run(ctx, d.cfg.SampleEvery, d.sample)
}

// Handler serves the pages, the events and the assets. Paths it does not know answer a page that says so (404):
// mount it at / beside the admin API's /api/ and probes.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.overview)
	mux.HandleFunc("GET /topics", d.topics)
	mux.HandleFunc("GET /topics/{name}", d.topic)
	mux.HandleFunc("GET /proxies", d.proxies)
	mux.HandleFunc("GET /proxies/{node}", d.proxy)
	mux.HandleFunc("GET /sources", d.sources)
	mux.HandleFunc("GET /changes", d.changes)
	mux.HandleFunc("GET /ui/events", d.events)
	mux.Handle("GET /ui/static/", d.static)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
			return
		}
		d.render(w, r, http.StatusNotFound, "notfound", page{Title: "Not found", Nav: ""}, notFound{What: "page " + r.URL.Path})
	})
	return mux
}

// assetVersion names the embedded assets' content: the pages link them with it (?v=), so that a browser may keep
// them for a year and still never runs an old script against a new page.
var assetVersion = sync.OnceValue(func() string {
	h := sha256.New()
	fs.WalkDir(assets, "static", func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, _ := assets.ReadFile(path)
			h.Write([]byte(path))
			h.Write(b)
		}
		return err
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
})

// staticHandler serves the embedded assets (no directory listings), cached for a year when asked for by their
// current version.
func staticHandler() http.Handler {
	static, _ := fs.Sub(assets, "static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("v") == assetVersion() {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

// menuItem is one entry of the navigation.
type menuItem struct{ Key, Href, Label string }

// controlPlaneMenu is the control plane's navigation.
var controlPlaneMenu = []menuItem{{"overview", "/", "Overview"}, {"topics", "/topics", "Topics"}, {"proxies", "/proxies", "Proxies"},
	{"sources", "/sources", "Sources"}, {"changes", "/changes", "Changes"}}

// page is what the layout needs of every page.
type page struct {
	Brand string
	Menu  []menuItem
	// API is the JSON the page is a view of, linked from its footer.
	API string
	// Assets is the assets' version (assetVersion).
	Assets string
	Title  string
	// Nav is the navigation entry the page belongs to.
	Nav string
	// Live are the events (change, proxies, sample) on which the page re-fetches its live region.
	Live    string
	Version string
	Model   uint64
	Serving bool
	Waiting []string
	Now     time.Time
	// Data is the page's own view.
	Data any
}

type notFound struct{ What, Hint string }

// render writes a page: the layout around the page's template, with code as its status.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, code int, name string, p page, data any) {
	a := d.cfg.Admin
	p.Brand, p.Menu = "rocketpilot", controlPlaneMenu
	if p.API == "" {
		p.API = "/api/v1/version"
	}
	p.Version, p.Model, p.Data = a.Version, a.Table.Version(), data
	p.Waiting = a.WaitingFor()
	p.Serving = p.Waiting == nil
	writePage(w, r, code, d.pages[name], p)
}

// writePage renders p in t's layout and writes it with code.
func writePage(w http.ResponseWriter, r *http.Request, code int, t *template.Template, p page) {
	p.Now, p.Assets = time.Now().UTC(), assetVersion()
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		http.Error(w, "render "+t.Name()+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The pages load only their own assets and connect only to their own events.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}

// signal is a broadcast without a queue: Wait returns a channel closed at the next Fire after it.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) Fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

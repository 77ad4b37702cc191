package dashboard

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fixture is a dashboard over a real table, cache and change log following the table.
type fixture struct {
	table   *routing.Table
	cache   *cache.Cache
	handler http.Handler
	dash    *Dashboard
}

func newFixture(t *testing.T, topics int, cfg Config) *fixture {
	t.Helper()
	table := benchTable(t, topics)
	c, err := cache.New(table, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	changes := &server.ChangeLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { changes.Follow(ctx, table); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	cfg.Admin = &server.Admin{Table: table, Cache: c, Changes: changes, Version: "test"}
	d := New(cfg)
	return &fixture{table: table, cache: c, handler: d.Handler(), dash: d}
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Code, w.Body.String()
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

// TestPagesRenderOnTheServer: every page is complete HTML from the server alone (no script needed to read it), with
// the model's facts in it.
func TestPagesRenderOnTheServer(t *testing.T) {
	f := newFixture(t, 120, Config{PageSize: 50})
	for _, c := range []struct {
		path  string
		wants []string
	}{
		{"/", []string{`id="topic-count">120<`, `id="brokerset-count">8<`, `id="proxy-count">0<`, "<svg class=\"spark\""}},
		{"/topics", []string{`id="topics-total">120<`, `href="/topics/topic-0000000"`, `id="next-page" href="/topics?after=topic-0000049"`}},
		{"/topics?q=topic-000011", []string{`id="topics-total">10<`, `href="/topics/topic-0000119"`}},
		{"/topics?q=topic-0000007", []string{`id="exact-match" href="/topics/topic-0000007"`}},
		{"/topics/topic-0000007", []string{`id="topic-name">topic-0000007<`, "<svg class=\"chain\"", `class="broker-name">broker-7<`, `class="broker-name">broker-8<`, "writable", "readable"}},
		{"/proxies", []string{`id="stream-count">0<`}},
		{"/sources", []string{"No NameServer is watched."}},
	} {
		code, body := f.get(t, c.path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", c.path, code)
			continue
		}
		mustContain(t, "GET "+c.path, body, c.wants...)
		mustContain(t, "GET "+c.path, body, `<main id="main"`, `<div id="live">`, `<script src="/ui/static/live.js?v=`+assetVersion()+`" defer>`)
	}
	// The change log, once the table changes under it.
	late := 0
	testutil.EventuallyTrue(t, 5*time.Second, "a change in the change log", func() bool {
		late++ // a new topic each time: the change log may start following after the first
		name := fmt.Sprintf("late-topic-%d", late)
		f.table.Apply("ns", routing.Update{Topic: name, Route: &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b", Perm: 6, ReadQueueNums: 1, WriteQueueNums: 1}}}})
		_, body := f.get(t, "/changes")
		return strings.Contains(body, `href="/topics/`+name+`"`)
	})
}

// TestTopicsPaging follows the next links to the end: every topic once, in name order.
func TestTopicsPaging(t *testing.T) {
	f := newFixture(t, 120, Config{PageSize: 50})
	path, seen := "/topics", 0
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("more than 3 pages of 50 for 120 topics")
		}
		_, body := f.get(t, path)
		seen += strings.Count(body, `<tr><td><a href="/topics/topic-`)
		path = ""
		if i := strings.Index(body, `id="next-page" href="`); i >= 0 {
			rest := body[i+len(`id="next-page" href="`):]
			path = strings.ReplaceAll(rest[:strings.Index(rest, `"`)], "&amp;", "&")
		}
	}
	if seen != 120 {
		t.Errorf("the pages listed %d topics, want 120", seen)
	}
}

// TestNamesAreEscaped: a topic may hold % and |, which must reach its page as one path segment, and text from the
// model is never markup.
func TestNamesAreEscaped(t *testing.T) {
	f := newFixture(t, 1, Config{})
	name := "odd%20name|x"
	f.table.Apply("ns", routing.Update{Topic: name, Route: &routing.Route{Members: []routing.Member{{Cluster: "<b>c</b>",
		BrokerName: "b", Perm: 6, ReadQueueNums: 1, WriteQueueNums: 1, Addrs: []routing.BrokerAddr{{Addr: "10.0.0.1:10911"}}}}}})
	code, body := f.get(t, "/topics/"+url.PathEscape(name))
	if code != http.StatusOK {
		t.Fatalf("GET its page: %d", code)
	}
	mustContain(t, "its page", body, `id="topic-name">odd%20name|x<`, "&lt;b&gt;c&lt;/b&gt;")
	if strings.Contains(body, "<b>c</b>") {
		t.Error("a cluster name from the model was written as markup")
	}
	_, list := f.get(t, "/topics?q=odd")
	mustContain(t, "the topic list", list, `href="/topics/odd%2520name%7Cx"`)
}

// TestReadOnlyAndNotFound: the dashboard never writes; unknown pages, topics and proxies say so with a 404 page.
func TestReadOnlyAndNotFound(t *testing.T) {
	f := newFixture(t, 3, Config{})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, httptest.NewRequest(m, "/topics", strings.NewReader("x")))
		if w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s /topics: %d, want 405", m, w.Code)
		}
	}
	for path, want := range map[string]string{
		"/nowhere":             "No page /nowhere.",
		"/topics/NoSuchTopic":  `No topic &#34;NoSuchTopic&#34;.`,
		"/proxies/no-such-one": `No proxy &#34;no-such-one&#34;.`,
	} {
		code, body := f.get(t, path)
		if code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, code)
		}
		mustContain(t, "GET "+path, body, want)
	}
	// HEAD of the event stream answers its headers and ends; the assets' folder is no listing.
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/ui/events", nil))
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD /ui/events: %d with %d bytes", w.Code, w.Body.Len())
	}
	if code, _ := f.get(t, "/ui/static/"); code != http.StatusNotFound {
		t.Errorf("GET /ui/static/: %d, want 404", code)
	}
	if code, body := f.get(t, "/topics?selector=color%3E3"); code != http.StatusBadRequest || !strings.Contains(body, "label selector:") {
		t.Errorf("a bad label selector: %d, want 400 with the reason", code)
	}
}

// TestEventsFollowTheFeeds: /ui/events sends "change" when the model changes and "proxies" when a stream opens,
// each at most once per burst, and refuses kinds it does not know.
func TestEventsFollowTheFeeds(t *testing.T) {
	f := newFixture(t, 3, Config{})
	srv := httptest.NewServer(f.handler)
	defer srv.Close()
	if resp, err := http.Get(srv.URL + "/ui/events?kinds=weather"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("an unknown kind: %v %v, want 400", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/ui/events?kinds=change,proxies", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if k, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- k
			}
		}
	}()
	seen := map[string]int{}
	// await reads events until one of kind want, counting every kind it reads.
	await := func(want string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case got := <-events:
				seen[got]++
				if got == want {
					return
				}
			case <-deadline:
				t.Fatalf("no %q event; seen %v", want, seen)
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // the handler arms its feeds once the headers are out
	for i := range 5 {                // a burst: one event, maybe two, never five
		f.table.Apply("ns", routing.Update{Topic: "burst-" + string(rune('a'+i)), Route: &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b", Perm: 6, ReadQueueNums: 1, WriteQueueNums: 1}}}})
	}
	await("change")
	if err := f.cache.OnDeltaStreamOpen(ctx, 7, ""); err != nil {
		t.Fatal(err)
	}
	await("proxies")
	f.cache.OnDeltaStreamClosed(7, nil)
	await("proxies")
	if seen["change"] > 2 {
		t.Errorf("a burst of 5 changes made %d change events, want at most 2", seen["change"])
	}
	cancel()
	for range events { // drained: the handler returns with the client
	}
	_, _ = io.Copy(io.Discard, resp.Body)
}

// TestChartsRecordPeriods: the recorder turns running totals into per-period counts and keeps the last ones.
func TestChartsRecordPeriods(t *testing.T) {
	r := newRecorder(3)
	for i, total := range []uint64{10, 15, 15, 40, 41} {
		r.record(sample{Pushes: total, Changes: uint64(i)})
	}
	got := r.snapshot()
	if len(got) != 3 || got[0].Pushes != 0 || got[1].Pushes != 25 || got[2].Pushes != 1 || got[2].Changes != 1 {
		t.Fatalf("samples %+v, want the last three periods: 0, 25, 1 pushes", got)
	}
	svg := string(sparkline([]uint64{0, 25, 1}, 3, "pushes <x>"))
	mustContain(t, "the sparkline", svg, `aria-label="pushes &lt;x&gt;"`, `<polyline class="line" points="0.0,38.0 120.0,2.0 240.0,36.6"/>`)
}

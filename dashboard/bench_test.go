package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// benchTable is a table of n topics over eight route shapes, as the other packages' scale benchmarks build it.
func benchTable(tb testing.TB, n int) *routing.Table {
	tb.Helper()
	shapes := make([]*routing.Route, 8)
	for i := range shapes {
		shapes[i] = &routing.Route{Members: []routing.Member{
			{Cluster: "C", BrokerName: fmt.Sprintf("broker-%d", i), Perm: 6, ReadQueueNums: 8, WriteQueueNums: 8,
				Addrs: []routing.BrokerAddr{{ID: 0, Addr: fmt.Sprintf("10.0.%d.1:10911", i)}, {ID: 1, Addr: fmt.Sprintf("10.0.%d.2:10911", i)}}},
			{Cluster: "C", BrokerName: fmt.Sprintf("broker-%d", i+1), Perm: 6, ReadQueueNums: 8, WriteQueueNums: 8,
				Addrs: []routing.BrokerAddr{{ID: 0, Addr: fmt.Sprintf("10.0.%d.1:10911", i+1)}}},
		}}
	}
	table := routing.NewTable()
	batch := make([]routing.Update, 0, 10_000)
	for i := range n {
		batch = append(batch, routing.Update{Topic: fmt.Sprintf("topic-%07d", i), Route: shapes[i%len(shapes)]})
		if len(batch) == cap(batch) {
			table.Apply("ns", batch...)
			batch = batch[:0]
		}
	}
	table.Apply("ns", batch...)
	return table
}

// BenchmarkPages renders the dashboard's pages over a table of 1,000,000 topics (DASHBOARD_BENCH_TOPICS
// overrides it, for a quick run), each iteration one page as a browser gets it: the server's time, from the
// request to the last byte written. The topics page walks one page of the sorted names, never the table; its
// goal is under 200 ms at 1M topics.
func BenchmarkPages(b *testing.B) {
	n := 1_000_000
	if s := testingEnv("DASHBOARD_BENCH_TOPICS"); s != "" {
		fmt.Sscan(s, &n)
	}
	table := benchTable(b, n)
	c, err := cache.New(table, cache.Options{})
	if err != nil {
		b.Fatal(err)
	}
	changes := &server.ChangeLog{}
	d := New(Config{Admin: &server.Admin{Table: table, Cache: c, Changes: changes}})
	h := d.Handler()
	mid := fmt.Sprintf("topic-%07d", n/2)
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"topics/first", "/topics"},
		{"topics/search", "/topics?q=" + mid[:10]},
		{"topics/page-in-the-middle", "/topics?after=" + mid},
		{"topics/selector", "/topics?selector=broker%3Dbroker-3"},
		{"topic", "/topics/" + mid},
		{"changes", "/changes"},
	} {
		b.Run(fmt.Sprintf("topics=%d/%s", n, p.name), func(b *testing.B) {
			runtime.GC()
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, p.path, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: %d %s", p.path, w.Code, w.Body.String())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
		})
	}
}

func testingEnv(k string) string { return os.Getenv(k) }

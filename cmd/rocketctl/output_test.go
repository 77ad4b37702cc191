package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/xds/server"
)

// kubectl's output options on get, over the admin API's fixtures: --sort-by, --no-headers, -o jsonpath= and
// -o custom-columns=, alone and together.
func TestGoldenOutputOptions(t *testing.T) {
	var topics server.TopicList
	fixture(t, "topics.json", &topics)
	var clusters []server.ClusterRow
	fixture(t, "clusters.json", &clusters)
	withOptions := func(sortBy string, noHeaders bool, print func(*view) error) func(*globals) error {
		return func(g *globals) error { return print(&view{globals: g, sortBy: sortBy, noHeaders: noHeaders}) }
	}
	topicRows := func(g *view) error { return printTopics(g, append([]server.TopicSummary(nil), topics.Topics...)) }
	for _, c := range []struct {
		name, sortBy string
		noHeaders    bool
		output       string
		print        func(*view) error
	}{
		{"topics.sort-by-cluster.table", "{.cluster}", false, "table", topicRows},
		{"topics.sort-by-version.wide", ".version", false, "wide", topicRows},
		{"topics.no-headers.table", "", true, "table", topicRows},
		{"topics.custom-columns", "", false, "custom-columns=NAME:.name,BROKERSET:.brokerSet,BROKERS:.brokers[*],POLICY:.policy", topicRows},
		{"topics.custom-columns-no-headers-sorted", "cluster", true, "custom-columns=NAME:.name,CLUSTER:.cluster", topicRows},
		{"topics.jsonpath", "", false, `jsonpath={range .items[*]}{.name}{"\t"}{.version}{"\n"}{end}`, topicRows},
		{"topics.jsonpath-sorted", ".brokerSet", false, `jsonpath={.items[*].name}`, topicRows},
		{"clusters.jsonpath", "", false, `jsonpath={.items[*].name}{"\n"}`, func(g *view) error { return printClusters(g, clusters) }},
	} {
		golden(t, c.name, withOptions(c.sortBy, c.noHeaders, c.print), c.output)
	}
	for _, c := range []struct{ sortBy, output, want string }{
		{".nosuchfield", "table", `--sort-by ".nosuchfield": no item has this field`},
		{"", "custom-columns=NAME", `-o custom-columns: "NAME": want HEADER:PATH`},
		{"", "jsonpath={.items[", "-o jsonpath"},
	} {
		g := &view{globals: &globals{out: &bytes.Buffer{}, output: c.output}, sortBy: c.sortBy}
		if err := printTopics(g, topics.Topics); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--sort-by %q -o %q: %v, want %q", c.sortBy, c.output, err, c.want)
		}
	}
}

// fakeAdmin answers the admin API's paths from the fixtures, and each GET /api/v1/topics with list.
func fakeAdmin(t *testing.T, list func(r *http.Request) (int, string)) *httptest.Server {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "admin", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/topics", func(w http.ResponseWriter, r *http.Request) {
		code, body := list(r)
		w.WriteHeader(code)
		w.Write([]byte(body))
	})
	mux.HandleFunc("GET /api/v1/topics/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "demo-inventory-003" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error": "topic \"` + r.PathValue("name") + `\" not found"}`))
			return
		}
		w.Write(read("topic-demo-inventory-003.json"))
	})
	mux.HandleFunc("GET /api/v1/clusters", func(w http.ResponseWriter, _ *http.Request) { w.Write(read("clusters.json")) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func runCtl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), append([]string{"rocketctl"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// get with names prints those found, then the error for the others, exit 1; with none found, only the error.
func TestGetFoundFirstThenNotFound(t *testing.T) {
	srv := fakeAdmin(t, func(*http.Request) (int, string) { return http.StatusOK, `{"total": 0, "topics": []}` })
	code, out, errOut := runCtl(t, "--server", srv.URL, "get", "topics", "demo-inventory-003", "nope", "-o", "name")
	if code != 1 || out != "topic/demo-inventory-003\n" || errOut != "error: topic \"nope\" not found\n" {
		t.Errorf("get topics FOUND nope: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCtl(t, "--server", srv.URL, "get", "clusters", "nope", "rmq-ClusterB-e0a3c7eb71476fa7", "--no-headers")
	if code != 1 || !strings.HasPrefix(out, "rmq-ClusterB-e0a3c7eb71476fa7 ") || strings.Count(out, "\n") != 1 || errOut != "error: cluster \"nope\" not found\n" {
		t.Errorf("get clusters nope FOUND: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runCtl(t, "--server", srv.URL, "get", "clusters", "nope", "TopicTest")
	if code != 1 || out != "" || errOut != "error: cluster \"nope\", \"TopicTest\" not found\n" {
		t.Errorf("get clusters nope TopicTest: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := runCtl(t, "--server", srv.URL, "get", "topics", "x", "-l", "broker=a"); code != 1 || !strings.Contains(errOut, "do not go together") {
		t.Errorf("names and a selector: exit %d, %q", code, errOut)
	}
}

// -l is sent to the server as labelSelector, which selects; its 400 is the error; a server that does not echo the
// selector does not select, and is reported; a list the limit cut says so on stderr.
func TestGetTopicsSelectorOnServer(t *testing.T) {
	var query string
	answer := `{"total": 9, "topics": [{"name": "a", "cluster": "c", "brokerSet": "h", "brokers": ["b"], "version": 1}], "continue": "a", "labelSelector": "broker!=x"}`
	srv := fakeAdmin(t, func(r *http.Request) (int, string) {
		query = r.URL.RawQuery
		switch sel := r.URL.Query().Get("labelSelector"); sel {
		case "bad":
			return http.StatusBadRequest, `{"error": "labelSelector: unknown key \"bad\""}`
		case "old":
			return http.StatusOK, `{"total": 9, "topics": []}`
		}
		return http.StatusOK, answer
	})
	code, out, errOut := runCtl(t, "--server", srv.URL, "get", "topics", "-l", "broker!=x", "--limit", "1", "-o", "name")
	if code != 0 || out != "topic/a\n" || errOut != "(more topics match after a: --limit 1 cut the list; use --limit 0 for all)\n" ||
		query != "labelSelector=broker%21%3Dx&limit=1&prefix=" {
		t.Errorf("exit %d, stdout %q, stderr %q, query %q", code, out, errOut, query)
	}
	answer = `{"total": 9, "topics": [{"name": "a", "cluster": "c", "brokerSet": "h", "brokers": ["b"], "version": 1}], "continue": "a"}`
	if _, _, errOut := runCtl(t, "--server", srv.URL, "get", "topics", "--limit", "1", "-o", "name"); errOut != "(8 more topics after a: --limit 1 cut the list; use --limit 0 for all)\n" {
		t.Errorf("without a selector: stderr %q", errOut)
	}
	for sel, want := range map[string]string{
		"bad": `error: --selector: /api/v1/topics: 400 Bad Request: labelSelector: unknown key "bad"`,
		"old": "error: --selector: the server at " + srv.URL + " does not select topics by label (older than this rocketctl)",
	} {
		if code, _, errOut := runCtl(t, "--server", srv.URL, "get", "topics", "-l", sel); code != 1 || strings.TrimSpace(errOut) != want {
			t.Errorf("-l %s: exit %d, stderr %q, want %q", sel, code, errOut, want)
		}
	}
	if code, _, errOut := runCtl(t, "--server", srv.URL, "get", "topics", "-o", "jsonpath"); code != 1 || !strings.Contains(errOut, "jsonpath=TEMPLATE") {
		t.Errorf("-o jsonpath without a template: exit %d, %q", code, errOut)
	}
}

package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/server/servertest"
)

// statusNow is the time of the status goldens: the sources' times are seconds before it.
var statusNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// statusAdmin serves the real admin API over a real model: the NameServer dump of the analyze tests, the file
// source over testdata/status (one rejected document), fixed watcher statuses; it returns the server and the table.
func statusAdmin(t *testing.T) (*httptest.Server, *routing.Table) {
	t.Helper()
	table := routing.NewTable()
	if _, err := loadDump(table, dump()); err != nil {
		t.Fatal(err)
	}
	sources := controllers.NewSources(table, watcher.Options{}, nil)
	t.Cleanup(sources.Close)
	fs, err := controllers.NewFileSource(filepath.Join("testdata", "status"), table, sources, controllers.NewPolicies(table), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	fs.Offline = true
	if err := fs.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	admin := servertest.Start(t, server.StackConfig{Table: table}).Admin()
	admin.Resources = func() any { return fs.Status() }
	admin.Sources = func() any {
		return []watcher.Status{
			{Source: "nss:shop/prod", Mode: watcher.ModeAllTopics, LastDiscovery: statusNow.Add(-3 * time.Second), NameServers: []watcher.AddrStatus{
				{Addr: "10.0.0.9:9876", LastError: "GET_BROKER_CLUSTER_INFO to 10.0.0.9:9876: dial tcp 10.0.0.9:9876: i/o timeout", Errors: 4}}},
			{Source: "namesrv", Mode: watcher.ModeAllTopics, Synced: true, Topics: 7, LastDiscovery: statusNow.Add(-8 * time.Second),
				NameServers: []watcher.AddrStatus{{Addr: "10.0.0.8:9876", Reachable: true, LastSuccess: statusNow.Add(-2 * time.Second),
					LastLatency: 1500 * time.Microsecond, Brokers: 3}}},
		}
	}
	srv := httptest.NewServer(admin.Handler())
	t.Cleanup(srv.Close)
	return srv, table
}

// goldenCtl runs rocketctl against a server and compares its stdout with testdata/golden/NAME; it must exit 0
// with nothing on stderr.
func goldenCtl(t *testing.T, name, server string, args ...string) {
	t.Helper()
	code, out, errOut := runCtl(t, append([]string{"--server", server}, args...)...)
	if code != 0 || errOut != "" {
		t.Fatalf("rocketctl %v: exit %d, stderr %q", args, code, errOut)
	}
	goldenCheck(t, name, out)
}

func TestGoldenStatusKinds(t *testing.T) {
	srv, _ := statusAdmin(t)
	clock = func() time.Time { return statusNow }
	t.Cleanup(func() { clock = time.Now })
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sources.table", []string{"get", "sources"}},
		{"sources.wide", []string{"get", "sources", "-o", "wide"}},
		{"sources.json", []string{"get", "sources", "-o", "json"}},
		{"sources-nss.table", []string{"get", "source", "nss:shop/prod", "--no-headers"}},
		{"policies.table", []string{"get", "policies"}},
		{"policies.wide", []string{"get", "policies", "-o", "wide"}},
		{"policies.yaml", []string{"get", "policies", "-o", "yaml"}},
		{"policies.name", []string{"get", "policies", "-o", "name"}},
		{"brokers.table", []string{"get", "brokers"}},
		{"brokers.wide", []string{"get", "brokers", "-o", "wide", "--sort-by", ".brokerSets"}},
		{"brokers.json", []string{"get", "brokers", "-o", "json"}},
		{"brokers.custom-columns", []string{"get", "brokers", "-o", "custom-columns=NAME:.name,PERMS:.perms[*]"}},
		{"resources.table", []string{"get", "resources"}},
		{"resources.wide", []string{"get", "resources", "-o", "wide"}},
		{"resources.jsonpath", []string{"get", "resources", "-o", `jsonpath={range .items[?(@.accepted==false)]}{.file}: {.error}{"\n"}{end}`}},
	} {
		goldenCtl(t, c.name, srv.URL, c.args...)
	}
	// A name not found is an error after the others are printed.
	code, out, errOut := runCtl(t, "--server", srv.URL, "get", "brokers", "broker-a", "broker-z", "-o", "name")
	if code != 1 || out != "broker/broker-a\n" || errOut != "error: broker \"broker-z\" not found\n" {
		t.Errorf("get brokers broker-a broker-z: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// The change log as the real handler keeps it: each step waits for the log to record it, so no two coalesce.
func TestGoldenChanges(t *testing.T) {
	srv, table := statusAdmin(t)
	if table.Topic("orders-1") == nil {
		t.Fatal("no orders-1 in the model")
	}
	var d namesrvDump
	b, err := os.ReadFile(dump())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	rd := d.Topics["orders-1"]
	route := watcher.RouteOf(&rd)
	source := "namesrv@" + d.NameServer
	var first time.Time
	for _, step := range []func(){
		func() { table.Apply(source, routing.Update{Topic: "orders-1"}) },
		func() { table.Apply(source, routing.Update{Topic: "orders-1", Route: route}) },
		func() { table.Apply(source, routing.Update{Topic: "drain-1"}, routing.Update{Topic: "drain-2"}) },
	} {
		step()
		changes := waitLogged(t, srv.URL, table.Version())
		if first.IsZero() {
			first = changes[0].Time
		}
	}
	clock = func() time.Time { return first.Add(3500 * time.Millisecond) } // every change 3s old
	t.Cleanup(func() { clock = time.Now })
	goldenCtl(t, "changes.table", srv.URL, "get", "changes")
	goldenCtl(t, "changes-orders-1.table", srv.URL, "get", "changes", "orders-1")
	goldenCtl(t, "changes.custom-columns", srv.URL, "get", "changes", "-o", "custom-columns=VERSION:.version,TOPICS:.names[*]", "--sort-by", ".topics")
}

// waitLogged waits until the admin API's change log reaches version, and returns it.
func waitLogged(t *testing.T, base string, version uint64) []server.Change {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(base + "/api/v1/changes")
		if err != nil {
			t.Fatal(err)
		}
		var changes []server.Change
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(b, &changes); err != nil {
			t.Fatal(err)
		}
		if n := len(changes); n > 0 && changes[n-1].Version == version {
			return changes
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change log did not reach version %d: %s", version, b)
		}
	}
}

// An empty list says "No resources found." on stderr, and nothing on stdout, exit 0, for every admin kind and
// for -o name; -o json is an empty list.
func TestNoResourcesFoundOnStderr(t *testing.T) {
	admin := servertest.Start(t, server.StackConfig{}).Admin()
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()
	for _, kind := range []string{"topics", "brokersets", "clusters", "routes", "proxies", "sources", "changes", "policies", "brokers", "resources"} {
		for _, o := range []string{"table", "wide", "name"} {
			code, out, errOut := runCtl(t, "--server", srv.URL, "get", kind, "-o", o)
			if code != 0 || out != "" || errOut != "No resources found.\n" {
				t.Errorf("get %s -o %s: exit %d, stdout %q, stderr %q", kind, o, code, out, errOut)
			}
		}
		if code, out, errOut := runCtl(t, "--server", srv.URL, "get", kind, "-o", "json"); code != 0 || out != "[]\n" || errOut != "" {
			t.Errorf("get %s -o json: exit %d, stdout %q, stderr %q", kind, code, out, errOut)
		}
	}
}

// Without a usable kubeconfig, the custom-resource kinds come from the server's --config documents (their
// status, the rejected ones counted on stderr); a server without --config files leaves the Kubernetes error with
// a pointer to get resources.
func TestCustomResourcesFromConfigFiles(t *testing.T) {
	srv, _ := statusAdmin(t)
	noKube := filepath.Join(t.TempDir(), "no-kubeconfig")
	t.Setenv("KUBECONFIG", noKube)
	t.Setenv("HOME", t.TempDir())
	code, out, errOut := runCtl(t, "--server", srv.URL, "get", "tr", "--kubeconfig", noKube)
	if code != 0 || !strings.Contains(errOut, "(no usable kubeconfig: TopicRoutes from the --config files of the server at "+srv.URL+")\n") ||
		!strings.Contains(errOut, "(1 TopicRoute document(s) rejected: rocketctl get resources says why)\n") {
		t.Fatalf("get tr: exit %d, stderr %q", code, errOut)
	}
	goldenCheck(t, "topicroutes-from-files.table", out)
	code, out, _ = runCtl(t, "--server", srv.URL, "get", "nss", "prod", "-n", "shop", "-o", "name")
	if code != 0 || out != "nameserversource.rocketpilot.io/prod\n" {
		t.Errorf("get nss prod -n shop -o name: exit %d, %q", code, out)
	}
	code, out, errOut = runCtl(t, "--server", srv.URL, "get", "tb", "-n", "other")
	if code != 0 || out != "" || !strings.HasSuffix(errOut, "No resources found.\n") {
		t.Errorf("get tb -n other: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runCtl(t, "--server", srv.URL, "get", "tb", "nope")
	if code != 1 || !strings.HasSuffix(errOut, "error: topicbinding \"nope\" not found\n") {
		t.Errorf("get tb nope: exit %d, stderr %q", code, errOut)
	}
	// A name whose document was rejected is not "not found": it says why.
	code, _, errOut = runCtl(t, "--server", srv.URL, "get", "tr", "typo", "-n", "shop")
	if code != 1 || !strings.Contains(errOut, `error: topicroute "typo" was rejected: `) || !strings.Contains(errOut, "drainage") {
		t.Errorf("get tr typo: exit %d, stderr %q", code, errOut)
	}

	empty := httptest.NewServer(servertest.Start(t, server.StackConfig{}).Admin().Handler())
	defer empty.Close()
	code, _, errOut = runCtl(t, "--server", empty.URL, "get", "topicroutes", "--kubeconfig", noKube)
	if code != 1 || !strings.Contains(errOut, "kubernetes configuration") || !strings.Contains(errOut, "has no --config files either (rocketctl get resources lists them)") {
		t.Errorf("without files: exit %d, stderr %q", code, errOut)
	}
}

// goldenCheck compares out with testdata/golden/NAME (or writes it with -update).
func goldenCheck(t *testing.T, name, out string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/rocketctl -update)", err)
	}
	if out != string(want) {
		t.Fatalf("%s differs; got:\n%s", name, out)
	}
}

// TestEndToEndConfigRejected runs serve --demo --config with a rejected document: get resources shows it and
// why, get sources counts it, and get tr reads the accepted TopicRoutes from the files without a kubeconfig.
func TestEndToEndConfigRejected(t *testing.T) {
	if testing.Short() {
		t.Skip("starts rocketpilot")
	}
	dir := t.TempDir()
	for _, name := range []string{"resources.yaml", "bad.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "status", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--config", dir, "--initial-sync-timeout", "1s")
	out := mustCtl(t, s, "get", "resources")
	if !regexp.MustCompile(`(?m)^bad\.yaml\s+TopicRoute\s+shop\s+typo\s+false\s+.*drainage`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^resources\.yaml\s+TopicRoute\s+shop\s+weighted\s+true\s+<none>$`).MatchString(out) {
		t.Fatalf("get resources:\n%s", out)
	}
	if out := mustCtl(t, s, "get", "resources", "shop/typo", "-o", "name"); out != "topicroute/shop/typo\n" {
		t.Fatalf("get resources shop/typo -o name: %q", out)
	}
	out = mustCtl(t, s, "get", "sources")
	for _, re := range []string{`(?m)^config\s+File\s+bad\.yaml\s+false\s+Rejected 1/1\s+-\s+-\s+TopicRoute shop/typo: .*drainage`,
		`(?m)^config\s+File\s+resources\.yaml\s+true\s+Accepted 4/4\s`, `(?m)^namesrv\s+NameServer\s+` + regexp.QuoteMeta(s.demo) + `\s+`,
		`(?m)^nss:shop/prod\s+NameServer\s+10\.0\.0\.9:9876\s+false\s`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("get sources lacks %s:\n%s", re, out)
		}
	}
	out, errOut, code := ctl(t, s, "get", "tr", "--kubeconfig", filepath.Join(dir, "no-kubeconfig"))
	if code != 0 || !strings.Contains(errOut, "1 TopicRoute document(s) rejected") ||
		!regexp.MustCompile(`(?m)^shop\s+drain-b\s+True\s`).MatchString(out) || !regexp.MustCompile(`(?m)^shop\s+weighted\s+True\s`).MatchString(out) {
		t.Fatalf("get tr without a kubeconfig: exit %d\n%s%s", code, out, errOut)
	}
	out = mustCtl(t, s, "get", "policies")
	if !regexp.MustCompile(`(?m)^TopicRoute\s+shop/drain-b\s+\d+\s+0\s+-\s+drain broker-b$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^TopicBinding\s+shop/orders\s+2\s+-\s+0\s+topics orders-1,orders-2; groups orders-cg$`).MatchString(out) {
		t.Fatalf("get policies:\n%s", out)
	}
	out = mustCtl(t, s, "get", "brokers")
	if !regexp.MustCompile(`(?m)^broker-a\s+DefaultCluster\s+127\.0\.0\.1:\d+\s+1\s+R`).MatchString(out) {
		t.Fatalf("get brokers:\n%s", out)
	}
	if out := mustCtl(t, s, "get", "changes", "TopicTest", "-o", "name"); !strings.HasPrefix(out, "change/") {
		t.Fatalf("get changes TopicTest -o name: %q", out)
	}
}

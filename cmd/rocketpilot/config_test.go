package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
)

// TestServeConfigDir runs `serve --config DIR` with no NameServer flag: the directory's NameServerSource feeds the
// model, its TopicRoute drains a broker, its invalid document is reported, and the admin API shows all three.
func TestServeConfigDir(t *testing.T) {
	ns := demoNameServer(t)
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("source.yaml", "apiVersion: rocketpilot.io/v1alpha1\nkind: NameServerSource\nmetadata: {name: demo}\nspec:\n  addresses: ["+ns.Addr()+"]\n")
	write("drain.yaml", "apiVersion: rocketpilot.io/v1alpha1\nkind: TopicRoute\nmetadata: {name: drain}\nspec:\n  topics: {exact: [TopicTest]}\n  drain: {brokerNames: [broker-b]}\n")
	write("bad.yaml", "apiVersion: rocketpilot.io/v1alpha1\nkind: TopicRoute\nmetadata: {name: bad}\nspec:\n  topics: {}\n")

	p := serveInProcess(t, "--config", dir)
	admin := p.addr(t, "serving the admin API", 10*time.Second)
	p.waitLog(t, "serving xDS", 10*time.Second)
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var resources []struct {
		File, Kind, Name, Error string
		Accepted                bool
	}
	getJSON("/api/v1/resources", &resources)
	if len(resources) != 3 {
		t.Fatalf("resources %+v", resources)
	}
	for _, r := range resources {
		if (r.File == "bad.yaml") == r.Accepted {
			t.Fatalf("%s accepted %v: %s", r.File, r.Accepted, r.Error)
		}
		if r.File == "bad.yaml" && !strings.Contains(r.Error, "topics must give at least one of exact, prefix and regex") {
			t.Fatalf("bad.yaml rejected for %q", r.Error)
		}
	}
	var topic struct {
		Policy struct {
			TopicRoute string `json:"topicRoute"`
		} `json:"policy"`
		Members []struct {
			BrokerName string `json:"brokerName"`
			Perm       int32  `json:"perm"`
		} `json:"members"`
	}
	getJSON("/api/v1/topics/TopicTest", &topic)
	if topic.Policy.TopicRoute != "default/drain" || len(topic.Members) != 2 || topic.Members[1].Perm != 4 {
		t.Fatalf("TopicTest under the drain: %+v", topic)
	}
	fams := scrape(t, "http://"+admin+"/metrics")
	if a, r := promtest.Sum(fams, "rocketpilot_config_resources", map[string]string{"state": "accepted"}),
		promtest.Sum(fams, "rocketpilot_config_resources", map[string]string{"state": "rejected"}); a != 2 || r != 1 {
		t.Errorf("rocketpilot_config_resources accepted %v rejected %v, want 2 and 1", a, r)
	}
}

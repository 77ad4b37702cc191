package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

func TestAdminAPI(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	ready := false
	changes := &ChangeLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go changes.Follow(ctx, s.table)
	admin := &Admin{Table: s.table, Cache: s.cache, Version: "test", Ready: func() bool { return ready }, Changes: changes}
	srv := httptest.NewServer(admin.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before sync: %d", code)
	}
	ready = true
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("readyz after sync: %d", code)
	}
	var topics struct {
		Total  int `json:"total"`
		Topics []struct {
			Name    string   `json:"name"`
			Cluster string   `json:"cluster"`
			Brokers []string `json:"brokers"`
		} `json:"topics"`
	}
	_, body := get("/api/v1/topics?prefix=Topic")
	if err := json.Unmarshal([]byte(body), &topics); err != nil {
		t.Fatal(err)
	}
	if topics.Total != 1 || topics.Topics[0].Name != "TopicTest" || len(topics.Topics[0].Brokers) != 2 {
		t.Fatalf("topics?prefix=Topic: %s", body)
	}
	if _, body := get("/api/v1/topics?limit=5"); !strings.Contains(body, `"total": `+itoa(len(s.ns.Topics()))) {
		t.Fatalf("total of all topics missing: %s", body[:200])
	}
	if code, body := get("/api/v1/routes/TopicTest"); code != 200 || !strings.Contains(body, topics.Topics[0].Cluster) {
		t.Fatalf("route: %d %s", code, body)
	}
	if code, body := get("/api/v1/clusters"); code != 200 || !strings.Contains(body, `"brokerName": "broker-a"`) {
		t.Fatalf("clusters: %d", code)
	}
	if code, _ := get("/api/v1/topics/no-such-topic"); code != http.StatusNotFound {
		t.Fatalf("unknown topic: %d", code)
	}
	if code, _ := get("/api/v1/topics?limit=x"); code != http.StatusBadRequest {
		t.Fatalf("bad limit: %d", code)
	}
	if code, _ := get("/api/v1/config_dump?node=nobody"); code != http.StatusNotFound {
		t.Fatalf("config dump of an unknown node: %d", code)
	}
	// A change to TopicTest shows in its chain, with what its source reported.
	testTopic(s, "TopicTest", 6, "b1")
	var chain struct {
		Sources []struct {
			Source string `json:"source"`
		} `json:"sources"`
		Changes []Change `json:"changes"`
	}
	waitFor(t, "the change in TopicTest's chain", func() bool {
		_, body := get("/api/v1/topics/TopicTest")
		return json.Unmarshal([]byte(body), &chain) == nil && len(chain.Changes) > 0
	})
	if len(chain.Sources) == 0 || !slices.Contains(chain.Changes[len(chain.Changes)-1].Names, "TopicTest") {
		t.Fatalf("chain: %+v", chain)
	}
	for _, path := range []string{"/healthz", "/api/v1/version", "/api/v1/brokersets", "/api/v1/brokers", "/api/v1/proxies", "/api/v1/sources",
		"/api/v1/policies", "/api/v1/resources", "/api/v1/changes"} {
		if code, _ := get(path); code != http.StatusOK {
			t.Fatalf("%s: %d", path, code)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

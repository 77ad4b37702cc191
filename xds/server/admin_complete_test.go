package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

func TestAdminNames(t *testing.T) {
	s := startStack(t, embedded.LoadDemo)
	srv := httptest.NewServer((&Admin{Table: s.table, Cache: s.cache}).Handler())
	defer srv.Close()
	get := func(path string) (int, NameList) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var l NameList
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, &l); err != nil {
				t.Fatalf("%s: %v: %s", path, err, b)
			}
		}
		return resp.StatusCode, l
	}
	if code, l := get("/api/v1/names/topics?prefix=Topic"); code != 200 || !slices.Equal(l.Names, []string{"TopicTest"}) || l.More {
		t.Fatalf("names/topics?prefix=Topic: %d %+v", code, l)
	}
	code, l := get("/api/v1/names/topics?prefix=demo-&limit=3")
	if code != 200 || len(l.Names) != 3 || !l.More || !slices.IsSorted(l.Names) || !strings.HasPrefix(l.Names[0], "demo-") {
		t.Fatalf("names/topics?prefix=demo-&limit=3: %d %+v", code, l)
	}
	if code, l := get("/api/v1/names/topics?prefix=nope"); code != 200 || l.Names == nil || len(l.Names) != 0 {
		t.Fatalf("names/topics?prefix=nope: %d %+v", code, l) // an empty list, not null
	}
	sets := s.table.BrokerSets()
	if code, l := get("/api/v1/names/brokersets?limit=0"); code != 200 || len(l.Names) != len(sets) || l.More {
		t.Fatalf("names/brokersets: %d %+v, %d sets", code, l, len(sets))
	}
	if code, l := get("/api/v1/names/clusters?prefix=rmq-&limit=1"); code != 200 || len(l.Names) != 1 || !l.More {
		t.Fatalf("names/clusters: %d %+v", code, l)
	}
	if code, l := get("/api/v1/names/proxies"); code != 200 || len(l.Names) != 0 {
		t.Fatalf("names/proxies with no stream: %d %+v", code, l)
	}
	for _, path := range []string{"/api/v1/names/widgets", "/api/v1/names/topics?limit=-1"} {
		if code, _ := get(path); code == 200 {
			t.Fatalf("%s: %d", path, code)
		}
	}
}

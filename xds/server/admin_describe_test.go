package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
)

// describe topicroute: the topics a TopicRoute governs, those it matches but lost to an older one (and to which),
// its rules with each backend resolved or not against the model, and a 404 for a name the model does not hold.
func TestAdminDescribeTopicRoute(t *testing.T) {
	table := routing.NewTable()
	r := &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b1", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
		Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
	var updates []routing.Update
	for _, name := range []string{"t-1", "t-2", "t-3", "other"} {
		updates = append(updates, routing.Update{Topic: name, Route: r})
	}
	table.Apply("ns", updates...)
	table.SetBrokers("ns", []routing.Broker{{Cluster: "C", Name: "b1", Addrs: r.Members[0].Addrs}}) // what resolves backends
	now := time.Now()
	table.SetPolicies([]routing.Policy{
		{Name: "ns/old", Created: now.Add(-time.Hour), Match: routing.TopicMatch{Exact: []string{"t-1"}}, Drain: []string{"b1"}},
		{Name: "ns/new", Created: now, Match: routing.TopicMatch{Prefix: []string{"t-"}},
			Send: []routing.Backend{{BrokerNames: []string{"b1"}, Weight: 80, Weighted: true}, {BrokerNames: []string{"gone"}, Weight: 20, Weighted: true}}},
	})
	srv := httptest.NewServer((&Admin{Table: table}).Handler())
	defer srv.Close()
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	var d PolicyDetail
	if code := get("/api/v1/policies/ns/new?limit=1", &d); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if d.Governs != 2 || !slices.Equal(d.Topics, []string{"t-2"}) || d.Lost != 1 || len(d.LostTopics) != 1 ||
		d.LostTopics[0] != (LostTopic{Topic: "t-1", To: "ns/old"}) || d.Matched != d.Governs || d.Overridden != d.Lost {
		t.Fatalf("governs %d %v, lost %d %v, matched %d overridden %d", d.Governs, d.Topics, d.Lost, d.LostTopics, d.Matched, d.Overridden)
	}
	if len(d.Send) != 2 || !d.Send[0].Resolved || d.Send[1].Resolved || d.Send[1].Weight == nil || *d.Send[1].Weight != 20 ||
		!slices.Equal(d.UnknownBackends, []string{"broker gone"}) || d.Match.Prefix[0] != "t-" {
		t.Fatalf("rules: %+v, unknown %v", d.Send, d.UnknownBackends)
	}
	if code := get("/api/v1/policies/ns/old", &d); code != http.StatusOK || d.Governs != 1 || d.Lost != 0 ||
		!slices.Equal(d.Drain, []string{"b1"}) {
		t.Fatalf("ns/old: %d %+v", code, d)
	}
	var e ErrorBody
	if code := get("/api/v1/policies/ns/nope", &e); code != http.StatusNotFound || e.Error != `topicroute "ns/nope" not found (GET /api/v1/policies lists them)` {
		t.Fatalf("not found: %d %q", code, e.Error)
	}
	if code := get("/api/v1/policies/ns/new?limit=x", &e); code != http.StatusBadRequest {
		t.Fatalf("bad limit: %d %q", code, e.Error)
	}
}

// The change log coalesces the writes made while it was busy into one change: it covers each of their versions,
// so a topic's version (the model version of its last change) is always in one of its rows.
func TestChangeLogCoalescedChangeCoversItsVersions(t *testing.T) {
	var l ChangeLog
	l.add(routing.ChangeSet{Version: 2, Topics: map[string]struct{}{"a": {}}})
	l.add(routing.ChangeSet{Version: 6, Topics: map[string]struct{}{"a": {}, "b": {}}}) // writes 3 to 6 coalesced
	l.add(routing.ChangeSet{Version: 7, Topics: map[string]struct{}{"c": {}}})
	got := l.Recent("", 0)
	if len(got) != 3 || got[0].From != 0 || got[1].From != 3 || got[1].Version != 6 || got[2].From != 0 {
		t.Fatalf("changes: %+v", got)
	}
	for v, want := range map[uint64]bool{2: false, 3: true, 5: true, 6: true, 7: false} {
		if got[1].Covers(v) != want {
			t.Errorf("the change 3-6 covers %d: %v", v, !want)
		}
	}
	// A topic named by no change but changed at 4 (a change names at most changeNames topics): the change 3-6.
	if rs := l.Recent("x", 4); len(rs) != 1 || rs[0].Version != 6 {
		t.Fatalf("x at 4: %+v", rs)
	}
}

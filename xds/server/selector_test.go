package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/routing"
)

// selectorTable holds 30 topics, t-00 … t-29, over three routes: t-i on broker-a and broker-b (i%3 == 0), on
// broker-b alone (1), on broker-c of cluster Other (2); the TopicRoute ns/p governs t-0*.
func selectorTable() *routing.Table {
	member := func(cluster, name string, i int) routing.Member {
		return routing.Member{Cluster: cluster, BrokerName: name, Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: fmt.Sprintf("10.0.0.%d:10911", i)}}}
	}
	routes := []*routing.Route{
		{Members: []routing.Member{member("C", "broker-a", 1), member("C", "broker-b", 2)}},
		{Members: []routing.Member{member("C", "broker-b", 2)}},
		{Members: []routing.Member{member("Other", "broker-c", 3)}},
	}
	table := routing.NewTable()
	var batch []routing.Update
	for i := range 30 {
		batch = append(batch, routing.Update{Topic: fmt.Sprintf("t-%02d", i), Route: routes[i%3]})
	}
	table.Apply("ns", batch...)
	table.SetPolicies([]routing.Policy{{Name: "ns/p", Version: "1", Match: routing.TopicMatch{Prefix: []string{"t-0"}}}})
	return table
}

func listSelected(t *testing.T, srv *httptest.Server, query url.Values) (int, TopicList, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + "/api/v1/topics?" + query.Encode()) // its connections close with it
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e ErrorBody
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, TopicList{}, e.Error
	}
	var list TopicList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, list, ""
}

func topicNames(list TopicList) []string {
	var out []string
	for _, tp := range list.Topics {
		out = append(out, tp.Name)
	}
	return out
}

// wantTopics are the names t-i for the i in 0..29 that keep.
func wantTopics(keep func(i int) bool) []string {
	var out []string
	for i := range 30 {
		if keep(i) {
			out = append(out, fmt.Sprintf("t-%02d", i))
		}
	}
	return out
}

// The topic list applies labelSelector while it lists: Kubernetes' operators over broker, brokerSet, cluster and
// policy, a several-valued key (broker, cluster) holding for = and in when one value does, for != and notin when
// none is excluded.
func TestAdminTopicsLabelSelector(t *testing.T) {
	table := selectorTable()
	srv := httptest.NewServer((&Admin{Table: table}).Handler())
	defer srv.Close()
	served := "rmq-Other-" + table.Topic("t-02").BrokerSet.Hash
	for _, c := range []struct {
		selector string
		want     []string
	}{
		{"broker=broker-a", wantTopics(func(i int) bool { return i%3 == 0 })},
		{"broker==broker-b", wantTopics(func(i int) bool { return i%3 != 2 })},
		{"broker!=broker-a", wantTopics(func(i int) bool { return i%3 != 0 })},
		{"broker in (broker-a, broker-c)", wantTopics(func(i int) bool { return i%3 != 1 })},
		{"broker notin (broker-b)", wantTopics(func(i int) bool { return i%3 == 2 })},
		{"cluster=Other", wantTopics(func(i int) bool { return i%3 == 2 })},
		{"cluster=" + served, wantTopics(func(i int) bool { return i%3 == 2 })}, // the CLUSTER column's name
		{"cluster!=C,broker", wantTopics(func(i int) bool { return i%3 == 2 })},
		{"brokerSet=" + table.Topic("t-01").BrokerSet.Hash, wantTopics(func(i int) bool { return i%3 == 1 })},
		{"policy=ns/p", wantTopics(func(i int) bool { return i < 10 })},
		{"policy", wantTopics(func(i int) bool { return i < 10 })},
		{"!policy,broker=broker-b", wantTopics(func(i int) bool { return i >= 10 && i%3 != 2 })},
		{"policy notin (ns/p)", wantTopics(func(i int) bool { return i >= 10 })},
		{"broker=nobody", nil},
		{"broker in (%RETRY%g, a|b, " + strings.Repeat("x", 100) + ")", nil}, // RocketMQ's names, not Kubernetes' values
	} {
		code, list, msg := listSelected(t, srv, url.Values{"labelSelector": {c.selector}})
		if code != http.StatusOK {
			t.Errorf("%s: %d %s", c.selector, code, msg)
			continue
		}
		if got := topicNames(list); !slices.Equal(got, c.want) || list.Total != 30 || list.LabelSelector == "" || list.Continue != "" {
			t.Errorf("%s: %v (total %d, selector %q, continue %q), want %v", c.selector, got, list.Total, list.LabelSelector, list.Continue, c.want)
		}
	}
	for _, c := range []struct{ selector, msg string }{
		{"broker in broker-a", "labelSelector: "},
		{"broker=a b", "labelSelector: "},
		{"zone=z1", `unknown key "zone"`},
		{"broker>1", "not numbers"},
	} {
		if code, _, msg := listSelected(t, srv, url.Values{"labelSelector": {c.selector}}); code != http.StatusBadRequest || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %q, want 400 with %q", c.selector, code, msg, c.msg)
		}
	}
	if _, list, _ := listSelected(t, srv, url.Values{"labelSelector": {"policy in ( ns/p ),broker!=broker-a"}}); list.LabelSelector != "broker!=broker-a,policy in (ns/p)" {
		t.Errorf("the selector applied is echoed as %q", list.LabelSelector)
	}
}

// A list the limit cuts says so with continue, the last name; passed back, it gives the next page; with a selector
// too. The last page has none.
func TestAdminTopicsContinue(t *testing.T) {
	table := selectorTable()
	srv := httptest.NewServer((&Admin{Table: table}).Handler())
	defer srv.Close()
	for _, c := range []struct {
		selector string
		want     []string
	}{
		{"", wantTopics(func(int) bool { return true })},
		{"broker=broker-a", wantTopics(func(i int) bool { return i%3 == 0 })},
	} {
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			q := url.Values{"limit": {"4"}, "continue": {after}, "labelSelector": {c.selector}}
			_, list, msg := listSelected(t, srv, q)
			if msg != "" || pages > 10 {
				t.Fatalf("%q: %s after %d pages", c.selector, msg, pages)
			}
			got = append(got, topicNames(list)...)
			if list.Continue == "" {
				if len(list.Topics) == 0 || len(list.Topics) > 4 {
					t.Errorf("%q: last page of %d", c.selector, len(list.Topics))
				}
				break
			}
			if len(list.Topics) != 4 || list.Continue != list.Topics[3].Name {
				t.Errorf("%q: page of %d, continue %q", c.selector, len(list.Topics), list.Continue)
			}
			after = list.Continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: pages give %v, want %v", c.selector, got, c.want)
		}
	}
}

// BenchmarkListTopicsBySelector lists the topics a label selector picks from a table of 1,000,000 topics
// (GET /api/v1/topics?labelSelector=broker=broker-8, the default limit of 1000): broker-8 serves one route shape of
// eight, applied to one topic in 500 (2,000 topics in all), so a page of 1000 reads half the table. Each
// iteration is one request through the handler, its JSON answer included.
func BenchmarkListTopicsBySelector(b *testing.B) {
	shapes := contentionShapes()
	table := routing.NewTable()
	batch := make([]routing.Update, 0, 10_000)
	for i := range contentionTopics {
		shape := shapes[i%7] // broker-0 … broker-7
		if i%500 == 0 {
			shape = shapes[7] // broker-7, broker-8
		}
		batch = append(batch, routing.Update{Topic: contentionTopic(i), Route: shape})
		if len(batch) == cap(batch) {
			table.Apply("ns", batch...)
			batch = batch[:0]
		}
	}
	table.Apply("ns", batch...)
	h := (&Admin{Table: table}).Handler()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/topics?labelSelector=broker%3Dbroker-8", nil)
	runtime.GC()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	b.StopTimer()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var list TopicList
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || len(list.Topics) != 1000 || list.Continue == "" {
		b.Fatalf("%d topics, continue %q: %v", len(list.Topics), list.Continue, err)
	}
}

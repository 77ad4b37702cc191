package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/routing"
)

// The topic list reads the table's sorted names a page at a time: lists longer than a page (limit 0, a limit
// above a page) come back whole, sorted, with the total of the prefix.
func TestAdminTopicListAcrossPages(t *testing.T) {
	table := routing.NewTable()
	r := &routing.Route{Members: []routing.Member{{Cluster: "C", BrokerName: "b1", Perm: 6, ReadQueueNums: 4, WriteQueueNums: 4,
		Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}}}
	var all []string
	var batch []routing.Update
	for i := range 12_000 {
		for _, p := range []string{"a-", "b-"} {
			name := fmt.Sprintf("%s%05d", p, (i*7)%12_000) // out of order
			all = append(all, name)
			batch = append(batch, routing.Update{Topic: name, Route: r})
		}
	}
	table.Apply("ns", batch...)
	slices.Sort(all)
	srv := httptest.NewServer((&Admin{Table: table}).Handler())
	defer srv.Close()
	list := func(query string) (int, []string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/api/v1/topics" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Total  int `json:"total"`
			Topics []struct {
				Name string `json:"name"`
			} `json:"topics"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tp := range out.Topics {
			names = append(names, tp.Name)
		}
		return out.Total, names
	}
	with := func(prefix string) []string {
		var out []string
		for _, n := range all {
			if strings.HasPrefix(n, prefix) {
				out = append(out, n)
			}
		}
		return out
	}
	for _, c := range []struct {
		query, prefix string
		limit         int
	}{
		{"", "", 1000},
		{"?limit=0", "", 0},
		{"?limit=15000", "", 15000},
		{"?limit=20000", "", 20000},
		{"?prefix=b-&limit=0", "b-", 0},
		{"?prefix=a-1&limit=5", "a-1", 5},
		{"?prefix=c-", "c-", 0},
	} {
		want := with(c.prefix)
		total := len(want)
		if c.limit > 0 && len(want) > c.limit {
			want = want[:c.limit]
		}
		if gotTotal, got := list(c.query); gotTotal != total || !slices.Equal(got, want) {
			t.Errorf("%s: %d names of %d, want %d of %d", c.query, len(got), gotTotal, len(want), total)
		}
	}
}

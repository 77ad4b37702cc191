package analyze

import (
	"testing"

	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

// TestSources: one NameServer of two down is a warning on its address; a source none of whose NameServers
// answers is an error, the flags' source named by its flag; errors sort first.
func TestSources(t *testing.T) {
	ps := Run(Input{Table: routing.NewTable(), Sources: []watcher.Status{
		{Source: "nss:shop/prod", Synced: true, NameServers: []watcher.AddrStatus{
			{Addr: "10.0.0.1:9876", Reachable: true}, {Addr: "10.0.0.2:9876", LastError: "i/o timeout"}}},
		{Source: "namesrv", NameServers: []watcher.AddrStatus{{Addr: "10.0.0.3:9876"}}},
	}})
	want := []struct {
		sev           Severity
		object, field string
		message       string
	}{
		{Error, "Flag/--namesrv", "", "none of its 1 NameServer answers and it never synced: it contributes no routes"},
		{Warning, "Flag/--namesrv", "", "NameServer 10.0.0.3:9876 does not answer: no answer yet"},
		{Warning, "NameServerSource/shop/prod", "spec.addresses[1]", "NameServer 10.0.0.2:9876 does not answer: i/o timeout"},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %+v", ps)
	}
	for i, w := range want {
		if p := ps[i]; p.Severity != w.sev || p.Object() != w.object || p.Field != w.field || p.Message != w.message || p.Fix == "" {
			t.Errorf("problem %d: got %+v, want %+v", i, p, w)
		}
	}
	if Errors(ps) != 1 {
		t.Errorf("Errors = %d", Errors(ps))
	}
}

// TestDocuments: a rejected document names the field the API server's message names; one that did not parse is
// the file's problem.
func TestDocuments(t *testing.T) {
	ps := Run(Input{Table: routing.NewTable(), Documents: []Document{
		{File: "a.yaml", Kind: "TopicRoute", Namespace: "default", Name: "ok", Accepted: true},
		{File: "a.yaml", Kind: "TopicRoute", Namespace: "default", Name: "bad",
			Error: `TopicRoute "bad" is invalid: spec.send.backends[0].weight: Invalid value: 2000: must be <= 1000`},
		{File: "b.yaml", Error: "yaml: line 1: mapping values are not allowed in this context"},
	}})
	if len(ps) != 2 || ps[0].Object() != "File/b.yaml" || ps[0].Field != "" ||
		ps[1].Object() != "TopicRoute/default/bad" || ps[1].Field != "spec.send.backends[0].weight" ||
		ps[1].Message != "rejected: spec.send.backends[0].weight: Invalid value: 2000: must be <= 1000" {
		t.Errorf("got %+v", ps)
	}
}

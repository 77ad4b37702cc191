package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/server/servertest"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// liveAdmin is a real admin API over a served model: topics Topic000..Topic119 and TopicTest on broker-a (a
// master and a slave) and broker-b, and a Go sidecar, node orders-7f9c, that resolved TopicTest.
type liveAdmin struct {
	url   string
	stack *server.Stack
}

func startLiveAdmin(t *testing.T) liveAdmin {
	t.Helper()
	table := routing.NewTable()
	brokers := []remoting.BrokerData{
		{Cluster: "DefaultCluster", BrokerName: "broker-a", BrokerAddrs: map[int64]string{0: "127.0.0.1:10911", 1: "127.0.0.1:10921"}},
		{Cluster: "DefaultCluster", BrokerName: "broker-b", BrokerAddrs: map[int64]string{0: "127.0.0.1:10931"}},
	}
	var rb []routing.Broker
	for _, b := range brokers {
		rb = append(rb, watcher.BrokerOf(b))
	}
	table.SetBrokers("test", rb)
	route := &remoting.TopicRouteData{BrokerDatas: brokers, QueueDatas: []remoting.QueueData{
		{BrokerName: "broker-a", ReadQueueNums: 4, WriteQueueNums: 4, Perm: 6},
		{BrokerName: "broker-b", ReadQueueNums: 4, WriteQueueNums: 4, Perm: 6},
	}}
	updates := []routing.Update{{Topic: "TopicTest", Route: watcher.RouteOf(route)}}
	for i := range 120 {
		updates = append(updates, routing.Update{Topic: fmt.Sprintf("Topic%03d", i), Route: watcher.RouteOf(route)})
	}
	table.Apply("test", updates...)
	stack := servertest.Start(t, server.StackConfig{Table: table})
	srv := httptest.NewServer(stack.Admin().Handler())
	t.Cleanup(srv.Close)
	sc, err := sidecar.Dial(stack.Addr(), sidecar.Options{NodeID: "orders-7f9c"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := sc.Resolve(ctx, "TopicTest"); err != nil {
		t.Fatal(err)
	}
	return liveAdmin{url: srv.URL, stack: stack}
}

// complete runs `rocketctl --server URL __complete ARGS...` in process, as a shell's completion script does, and
// returns the candidates and the directive line.
func complete(t *testing.T, server string, args ...string) (candidates []string, directive string, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	argv := append([]string{"rocketctl", "__complete", "--server", server}, args...)
	if code := run(context.Background(), argv, &out, &errOut); code != 0 {
		t.Fatalf("rocketctl %v: exit %d: %s", argv[1:], code, errOut.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(line, ":") {
			directive = line
			continue
		}
		if line != "" {
			candidates = append(candidates, line)
		}
	}
	return candidates, directive, errOut.String()
}

// getKindNames are the kinds get takes, as its usage lists them.
func getKindNames() []string {
	var kinds []string
	for _, k := range getKinds {
		kinds = append(kinds, k.names[0])
	}
	return kinds
}

// noise is whatever completion writes on stderr but cobra's note of the directive (which the shell scripts drop
// with the rest of stderr).
func noise(stderr string) bool {
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line != "" && !strings.HasPrefix(line, "Completion ended with directive:") {
			return true
		}
	}
	return false
}

func TestCompletionAgainstAdminAPI(t *testing.T) {
	a := startLiveAdmin(t)
	topics := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf("Topic%03d", i))
		}
		return out
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"get", "topics", "Topic01"}, topics(10, 20)},
		{[]string{"get", "t", "TopicT"}, []string{"TopicTest"}},
		{[]string{"get", "topics", "Topic"}, topics(0, completionLimit)}, // a page, sorted
		{[]string{"get", "routes", "TopicTest", "TopicT"}, nil},          // a name already given is not offered again
		{[]string{"describe", "topic", "Topic11"}, topics(110, 120)},
		{[]string{"describe", "topic", "TopicTest", ""}, nil}, // one name only
		{[]string{"resolve", "TopicTe"}, []string{"TopicTest"}},
		{[]string{"get", "proxies", ""}, []string{"orders-7f9c"}},
		{[]string{"proxy-status", "ord"}, []string{"orders-7f9c"}},
		{[]string{"proxy-config", "o"}, []string{"orders-7f9c"}},
		{[]string{"proxy-config", "orders-7f9c", ""}, []string{"listeners", "ecds", "routes", "clusters", "endpoints", "all"}},
		{[]string{"proxy-config", "orders-7f9c", "e"}, []string{"ecds", "endpoints"}},
		{[]string{"get", "clusters", "rmq-"}, []string{"rmq-DefaultCluster-" + a.stack.Table().Topic("TopicTest").BrokerSet.Hash}},
		{[]string{"get", "bs", ""}, []string{a.stack.Table().Topic("TopicTest").BrokerSet.Hash}},
		{[]string{"get", "topicroutes", ""}, nil}, // the Kubernetes kinds: no names from the admin API
		{[]string{"get", ""}, getKindNames()},
		{[]string{"get", "pro"}, []string{"proxies"}},
		{[]string{"get", "topics", "-o", ""}, []string{"table", "wide", "json", "yaml", "name", "jsonpath=", "custom-columns="}},
		{[]string{"proxy-config", "orders-7f9c", "-o", ""}, []string{"table", "yaml", "json"}},
		{[]string{"proxy-status", "--output", "j"}, []string{"json"}},
	} {
		got, directive, stderr := complete(t, a.url, c.args...)
		if !slices.Equal(got, c.want) {
			t.Errorf("__complete %q: got %q, want %q", c.args, got, c.want)
		}
		if !strings.HasPrefix(directive, ":") || noise(stderr) {
			t.Errorf("__complete %q: directive %q, stderr %q", c.args, directive, stderr)
		}
	}
	// describe's kinds, whether describe lists them or we do, start with topic.
	if got, _, _ := complete(t, a.url, "describe", "to"); !slices.Contains(got, "topic") {
		t.Errorf("__complete describe to: %q", got)
	}
}

// A server that cannot be reached completes nothing, at once, and says nothing.
func TestCompletionWithoutServer(t *testing.T) {
	srv := httptest.NewServer(nil)
	addr := srv.URL
	srv.Close() // nothing listens there now
	start := time.Now()
	for _, args := range [][]string{{"get", "topics", "Top"}, {"proxy-config", ""}, {"describe", "topic", ""}} {
		got, directive, stderr := complete(t, addr, args...)
		if len(got) != 0 || directive != ":4" || noise(stderr) {
			t.Errorf("__complete %q against no server: %q %q, stderr %q", args, got, directive, stderr)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("completing against no server took %v", took)
	}
	// Words that need no server still complete.
	if got, _, _ := complete(t, addr, "proxy-config", "node", "cl"); !slices.Equal(got, []string{"clusters"}) {
		t.Errorf("__complete proxy-config node cl: %q", got)
	}
}

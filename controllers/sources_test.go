package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

// TestRestartedWatcherWithdrawsWhatItNoLongerFollows: a topic deleted while a source's watcher restarts (its spec
// changed) leaves the model once the new watcher has synced, instead of being served forever.
func TestRestartedWatcherWithdrawsWhatItNoLongerFollows(t *testing.T) {
	ns := demoNameServer(t)
	table := routing.NewTable()
	sources := NewSources(table, watcher.Options{BrokerInterval: 50 * time.Millisecond, RateLimit: 1e6, RemoveAfter: time.Hour}, nil)
	defer sources.Close()
	spec := SourceSpec{Addrs: []string{ns.Addr()}, Interval: time.Hour, Mode: watcher.ModeAllTopics}
	if err := sources.Set("ns/demo", spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sources.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	const gone = "demo-orders-040"
	if table.Topic(gone) == nil {
		t.Fatal("the topic was never learned")
	}
	ns.RemoveTopic(gone)
	spec.Interval = 2 * time.Hour // a spec change restarts the watcher
	if err := sources.Set("ns/demo", spec); err != nil {
		t.Fatal(err)
	}
	if table.Topic("TopicTest") == nil {
		t.Fatal("a restart withdrew routes before the new watcher synced")
	}
	eventually(t, "the deleted topic withdrawn", func() (bool, string) { return table.Topic(gone) == nil, "" })
	if n, _ := table.Stats(); n != ns.TopicCount() {
		t.Fatalf("%d topics, the NameServer has %d", n, ns.TopicCount())
	}
}

// TestRestartedInUseWatcherKeepsTheTopicsInUse: a TopicsInUse source restarted follows every topic in use at
// once, and withdraws none of them.
func TestRestartedInUseWatcherKeepsTheTopicsInUse(t *testing.T) {
	ns := demoNameServer(t)
	table := routing.NewTable()
	release := table.Interest().Want("TopicTest", "demo-orders-001")
	defer release()
	sources := NewSources(table, watcher.Options{BrokerInterval: 50 * time.Millisecond, RateLimit: 1e6, RemoveAfter: time.Hour}, nil)
	defer sources.Close()
	spec := SourceSpec{Addrs: []string{ns.Addr()}, Interval: time.Hour, Mode: watcher.ModeInUse}
	if err := sources.Set("ns/demo", spec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the topics in use learned", func() (bool, string) {
		return table.Topic("TopicTest") != nil && table.Topic("demo-orders-001") != nil, ""
	})
	spec.Interval = 2 * time.Hour
	if err := sources.Set("ns/demo", spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sources.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the withdrawal runs after the sync
	for _, topic := range []string{"TopicTest", "demo-orders-001"} {
		if table.Topic(topic) == nil {
			t.Fatalf("%s, in use, withdrawn by the restart", topic)
		}
	}
	if st, _ := sources.Status("ns/demo"); st.Topics != 2 {
		t.Fatalf("the restarted watcher follows %d topics, want the 2 in use", st.Topics)
	}
}

// TestFlagSourceIsASourceLikeAnyOther: the command line's NameServers run under the same supervisor as the
// NameServerSources, with one status list for both, and keep their table sources' names ("namesrv@<addr>").
func TestFlagSourceIsASourceLikeAnyOther(t *testing.T) {
	ns := demoNameServer(t)
	table := routing.NewTable()
	sources := NewSources(table, watcher.Options{RateLimit: 1e6}, nil)
	defer sources.Close()
	for key, mode := range map[string]watcher.Mode{FlagSource: watcher.ModeAllTopics, "ns/demo": watcher.ModeAllTopics} {
		if err := sources.Set(key, SourceSpec{Addrs: []string{ns.Addr()}, Mode: mode}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case <-sources.Synced(FlagSource):
	case <-ctx.Done():
		t.Fatal("the command line's source never synced")
	}
	if sources.Synced("ns/absent") != nil {
		t.Fatal("a source that does not run has a sync channel")
	}
	if err := sources.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range sources.Statuses() {
		names = append(names, st.Source)
	}
	if !slices.Equal(names, []string{"namesrv", "nss:ns/demo"}) {
		t.Fatalf("statuses of sources %v, want the NameServerSource's and the command line's, by key", names)
	}
	got := table.TopicSources("TopicTest")
	var tableSources []string
	for _, s := range got {
		tableSources = append(tableSources, s.Source)
	}
	slices.Sort(tableSources)
	if want := []string{"namesrv@" + ns.Addr(), "nss:ns/demo@" + ns.Addr()}; !slices.Equal(tableSources, want) {
		t.Fatalf("table sources of TopicTest %v, want %v", tableSources, want)
	}
}

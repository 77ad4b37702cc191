package controllers

import (
	"context"
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

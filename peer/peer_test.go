package peer

import (
	"context"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/routing"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// leader is a table served to followers on a real gRPC server over loopback.
type leader struct {
	table  *routing.Table
	server *Server
	addr   string
	stop   func()
}

func startLeader(t *testing.T, table *routing.Table) *leader {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := NewServer(ctx, table, nil, nil)
	g := grpc.NewServer()
	s.Register(g)
	done := make(chan struct{}, 2)
	go func() { s.Run(ctx); done <- struct{}{} }()
	go func() { _ = g.Serve(lis); done <- struct{}{} }()
	l := &leader{table: table, server: s, addr: lis.Addr().String()}
	stopped := false
	l.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		g.Stop()
		<-done
		<-done
	}
	t.Cleanup(l.stop)
	return l
}

func startFollower(t *testing.T, table *routing.Table, all bool, leaderAddr func() string) *Follower {
	t.Helper()
	f := NewFollower(table, FollowerOptions{Leader: leaderAddr, All: all, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		RemoveGrace: removeGrace,
		Dial:        []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// removeGrace is the followers' grace before a removal a new stream reports is applied.
const removeGrace = 700 * time.Millisecond

func route(groups ...string) *routing.Route {
	r := &routing.Route{}
	for _, g := range groups {
		r.Members = append(r.Members, routing.Member{Cluster: "DefaultCluster", BrokerName: g,
			Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}, ReadQueueNums: 4, WriteQueueNums: 4, Perm: 6})
	}
	return r
}

// same waits until the follower's table holds what the leader's does for the topics named, source by source.
func same(t *testing.T, what string, leader, follower *routing.Table, topics ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		diff := ""
		for _, name := range topics {
			if want, got := leader.TopicSources(name), follower.TopicSources(name); !reflect.DeepEqual(want, got) {
				diff = name
				break
			}
		}
		if diff == "" && reflect.DeepEqual(leader.SourceBrokers(), follower.SourceBrokers()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the follower's %q is %+v, the leader's %+v", what, diff, follower.TopicSources(diff), leader.TopicSources(diff))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A follower of every topic holds the leader's source routes and broker tables: at its start, after each
// change, after a withdrawal, and through the leader's absence; a new leader that lacks a topic has it withdrawn.
func TestFollowerOfEveryTopic(t *testing.T) {
	lt := routing.NewTable()
	lt.Apply("namesrv@a", routing.Update{Topic: "t1", Route: route("broker-a")}, routing.Update{Topic: "t2", Route: route("broker-a", "broker-b")})
	lt.Apply("namesrv@b", routing.Update{Topic: "t1", Route: route("broker-b")})
	lt.SetBrokers("namesrv@a", []routing.Broker{{Cluster: "DefaultCluster", Name: "broker-a", Addrs: []routing.BrokerAddr{{ID: 0, Addr: "10.0.0.1:10911"}}}})
	l := startLeader(t, lt)
	var addr atomic.Value
	addr.Store(l.addr)
	ft := routing.NewTable()
	f := startFollower(t, ft, true, func() string { return addr.Load().(string) })
	select {
	case <-f.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("the follower never synced")
	}
	same(t, "first sync", lt, ft, "t1", "t2")

	lt.Apply("namesrv@a", routing.Update{Topic: "t3", Route: route("broker-c")}, routing.Update{Topic: "t2", Route: route("broker-b")})
	lt.Apply("namesrv@b", routing.Update{Topic: "t1"})
	same(t, "changes", lt, ft, "t1", "t2", "t3")
	lt.Apply("namesrv@a", routing.Update{Topic: "t3"})
	same(t, "a withdrawn topic", lt, ft, "t3")
	if ft.Topic("t3") != nil {
		t.Fatal("t3, withdrawn at the leader, is still in the follower's table")
	}

	// The leader goes: the follower keeps its last routes.
	l.stop()
	time.Sleep(200 * time.Millisecond)
	if ft.Topic("t1") == nil || ft.Topic("t2") == nil {
		t.Fatal("the follower dropped routes when the leader went away")
	}
	if f.Status().Connected {
		t.Fatal("the follower reports a connection to a stopped leader")
	}

	// A new leader, which never had t2 and has t4: the follower takes its world; t2 is withdrawn only after the
	// grace (a new leader may not have polled everything yet), and a topic that comes back within it stays.
	nt := routing.NewTable()
	nt.Apply("namesrv@a", routing.Update{Topic: "t1", Route: route("broker-a")}, routing.Update{Topic: "t4", Route: route("broker-d")})
	nt.SetBrokers("namesrv@a", lt.SourceBrokers()["namesrv@a"])
	nl := startLeader(t, nt)
	addr.Store(nl.addr)
	same(t, "a new leader", nt, ft, "t1", "t4")
	start := time.Now()
	if ft.Topic("t2") == nil {
		t.Fatal("t2 withdrawn at once when a new leader did not have it: no grace for a leader still polling")
	}
	waitFor(t, "t2 withdrawn after the grace", func() bool { return ft.Topic("t2") == nil })
	if waited := time.Since(start); waited < removeGrace/2 {
		t.Fatalf("t2 withdrawn after %v, the grace is %v", waited, removeGrace)
	}
}

// A follower in in-use discovery whose leader is replaced keeps its topics while the new leader, asked for them,
// polls them: what comes back within the grace is never withdrawn.
func TestFollowerKeepsTopicsWhileANewLeaderPolls(t *testing.T) {
	lt := routing.NewTable()
	lt.Apply("namesrv@a", routing.Update{Topic: "used", Route: route("broker-a")})
	l := startLeader(t, lt)
	var addr atomic.Value
	addr.Store(l.addr)
	ft := routing.NewTable()
	ft.Interest().Want("used")
	startFollower(t, ft, false, func() string { return addr.Load().(string) })
	same(t, "first sync", lt, ft, "used")

	l.stop()
	nt := routing.NewTable() // a new leader that has not polled "used" yet
	nl := startLeader(t, nt)
	addr.Store(nl.addr)
	waitFor(t, "the new leader asked for the follower's topic", func() bool { return nt.Interest().Wanted("used") })
	time.Sleep(removeGrace / 3)
	if ft.Topic("used") == nil {
		t.Fatal("the follower withdrew a topic the new leader had not polled yet")
	}
	nt.Apply("namesrv@a", routing.Update{Topic: "used", Route: route("broker-b")}) // its watcher answers
	same(t, "the new leader's answer", nt, ft, "used")
	time.Sleep(removeGrace)
	if ft.Topic("used") == nil {
		t.Fatal("a topic the new leader sent within the grace was withdrawn after it")
	}
}

// A replica that stops leading ends its followers' streams and refuses new ones, so that they look for the
// leader again; serving again, it takes them back.
func TestServerStopsServingWhenItFollows(t *testing.T) {
	lt := routing.NewTable()
	lt.Apply("namesrv@a", routing.Update{Topic: "t1", Route: route("broker-a")})
	l := startLeader(t, lt)
	ft := routing.NewTable()
	f := startFollower(t, ft, true, func() string { return l.addr })
	same(t, "first sync", lt, ft, "t1")
	l.server.SetServing(false)
	waitFor(t, "the follower disconnected", func() bool { return !f.Status().Connected })
	time.Sleep(200 * time.Millisecond)
	if f.Status().Connected || l.server.Followers() != 0 {
		t.Fatalf("a replica that follows still serves a follower: %+v, %d streams", f.Status(), l.server.Followers())
	}
	if ft.Topic("t1") == nil {
		t.Fatal("the follower dropped its routes when its leader stopped leading")
	}
	l.server.SetServing(true)
	waitFor(t, "the follower back", func() bool { return f.Status().Connected })
	lt.Apply("namesrv@a", routing.Update{Topic: "t2", Route: route("broker-b")})
	same(t, "a change after it leads again", lt, ft, "t1", "t2")
}

// A follower of the topics in use subscribes to its table's interest, which the leader adds to its own (so that
// its watchers poll them), and receives only those.
func TestFollowerOfTopicsInUse(t *testing.T) {
	lt := routing.NewTable()
	lt.Apply("namesrv@a", routing.Update{Topic: "used", Route: route("broker-a")}, routing.Update{Topic: "unused", Route: route("broker-a")})
	l := startLeader(t, lt)
	ft := routing.NewTable()
	release := ft.Interest().Want("used")
	startFollower(t, ft, false, func() string { return l.addr })
	same(t, "a topic in use", lt, ft, "used")
	if ft.Topic("unused") != nil {
		t.Fatal("the follower received a topic none of its sidecars uses")
	}
	if !lt.Interest().Wanted("used") {
		t.Fatal("the leader does not poll a topic a follower's sidecars use")
	}

	// A topic that comes into use at the follower: wanted at the leader, where it arrives later (as a watcher
	// in in-use mode finds it), and then at the follower.
	ft.Interest().Want("later")
	waitFor(t, "the leader wanting a topic a follower came to use", func() bool { return lt.Interest().Wanted("later") })
	lt.Apply("namesrv@a", routing.Update{Topic: "later", Route: route("broker-b")})
	same(t, "a topic found after it was wanted", lt, ft, "later")

	release()
	waitFor(t, "the leader releasing a topic no follower uses", func() bool { return !lt.Interest().Wanted("used") })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A follower subscribing to more topics by name than the limit is refused, and the leader polls none of them.
func TestSubscriptionsByNameAreBounded(t *testing.T) {
	l := startLeader(t, routing.NewTable())
	l.server.maxNames.Store(3)
	ft := routing.NewTable()
	for _, name := range []string{"a", "b", "c", "d"} {
		ft.Interest().Want(name)
	}
	f := startFollower(t, ft, false, func() string { return l.addr })
	waitFor(t, "the refusal", func() bool { return strings.Contains(f.Status().LastError, "ResourceExhausted") })
	if l.table.Interest().Wanted("a") {
		t.Fatal("the leader polls topics of a refused subscription")
	}
}

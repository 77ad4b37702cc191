package main

import (
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// TestServePeerLeader: `serve --peer-leader` follows another serve, which alone polls the NameServer: the
// follower's sidecar resolves the demo topics and follows a change; the leader counts one follower, the follower
// says it follows, and the NameServer's route queries do not grow with the follower.
func TestServePeerLeader(t *testing.T) {
	ns := demoNameServer(t)
	leader := serveInProcess(t, "--namesrv", ns.Addr(), "--poll-interval", "200ms", "--broker-poll-interval", "200ms", "--metrics-address", "", "--peer-serve")
	leaderXDS, leaderAdmin := leader.addr(t, "serving xDS", 10*time.Second), leader.addr(t, "serving the admin API", time.Second)
	follower := serveInProcess(t, "--namesrv", ns.Addr(), "--poll-interval", "200ms", "--broker-poll-interval", "200ms",
		"--peer-leader", leaderXDS, "--metrics-address", "")
	followerXDS, followerAdmin := follower.addr(t, "serving xDS", 10*time.Second), follower.addr(t, "serving the admin API", time.Second)

	sc, ctx := sidecarResolving(t, followerXDS, sidecar.Options{NodeID: "peer-test"})
	queries := ns.RequestCount(remoting.GetRouteInfoByTopic)
	time.Sleep(time.Second)
	perSecond := ns.RequestCount(remoting.GetRouteInfoByTopic) - queries
	t.Logf("%d route queries a second, leader and follower", perSecond)
	// The demo's 121 topics every 200 ms: about 605 route queries a second from one poller, 1,210 from two.
	if perSecond > 900 {
		t.Fatalf("%d route queries a second with a leader and a follower: the follower polls too", perSecond)
	}
	if err := ns.SetPerm(embedded.DemoTopic, "broker-b", remoting.PermRead); err != nil {
		t.Fatal(err)
	}
	for {
		data, err := sc.Resolve(ctx, embedded.DemoTopic)
		if err != nil {
			t.Fatal(err)
		}
		if perm := permOf(data, "broker-b"); perm == remoting.PermRead {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the change never reached the follower's sidecar")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if got := promtest.Sum(scrape(t, "http://"+leaderAdmin+"/metrics"), "rocketpilot_peer_followers", nil); got != 1 {
		t.Fatalf("the leader counts %v followers", got)
	}
	fams := scrape(t, "http://"+followerAdmin+"/metrics")
	if promtest.Sum(fams, "rocketpilot_peer_following", nil) != 1 || promtest.Sum(fams, "rocketpilot_peer_leader_connected", nil) != 1 {
		t.Fatal("the follower does not report following a connected leader")
	}
}

func permOf(data *remoting.TopicRouteData, group string) int32 {
	for _, q := range data.QueueDatas {
		if q.BrokerName == group {
			return q.Perm
		}
	}
	return -1
}

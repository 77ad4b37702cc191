package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/internal/promtest"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// TestRestartUnderLoad restarts the control plane under its Go sidecars: while it is down they keep resolving
// from what they hold; when it is back they reconnect through the admission rate limit (a storm larger than its
// burst), and no sidecar ever sees a topic go missing or a route with no brokers: the restarted server serves
// only after its first full sync, so it never pushes an empty or partial world.
func TestRestartUnderLoad(t *testing.T) {
	ns := demoNameServer(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xdsAddr := lis.Addr().String()
	lis.Close() // the port both runs serve on, so that the sidecars come back to the same address
	args := []string{"--namesrv", ns.Addr(), "--xds-address", xdsAddr, "--poll-interval", "300ms",
		"--broker-poll-interval", "200ms", "--xds-stream-rate", "20", "--xds-stream-burst", "5", "--xds-admission-wait", "100ms"}
	first := serveInProcess(t, args...)
	first.waitLog(t, "serving xDS", 20*time.Second)

	topics := ns.Topics()
	slices.Sort(topics)
	const sidecars, perSidecar = 24, 6
	type event struct {
		sidecar int
		topic   string
		what    string
	}
	var (
		mu   sync.Mutex
		lost []event // a route withdrawn, or with no broker to send to or read from
		seen int
	)
	clients := make([]*sidecar.Client, sidecars)
	wanted := make([][]string, sidecars)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range sidecars {
		sc, err := sidecar.Dial(xdsAddr, sidecar.Options{NodeID: fmt.Sprintf("restart-%d", i), MinBackoff: 20 * time.Millisecond,
			MaxBackoff: 200 * time.Millisecond, DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		clients[i] = sc
		for j := range perSidecar {
			topic := topics[(i*perSidecar+j)%len(topics)]
			wanted[i] = append(wanted[i], topic)
			if _, err := sc.Resolve(ctx, topic); err != nil {
				t.Fatalf("sidecar %d resolves %s: %v", i, topic, err)
			}
			defer sc.Watch(topic, func(data *remoting.TopicRouteData, err error) {
				mu.Lock()
				defer mu.Unlock()
				seen++
				switch {
				case err != nil:
					lost = append(lost, event{i, topic, err.Error()})
				case len(data.QueueDatas) == 0 || len(data.BrokerDatas) == 0:
					lost = append(lost, event{i, topic, "a route with no queues or brokers"})
				}
			})()
		}
	}

	if err := first.stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	// Down: every sidecar still resolves what it holds.
	for i, sc := range clients {
		for _, topic := range wanted[i] {
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			r, err := sc.Resolve(rctx, topic)
			rcancel()
			if err != nil || len(r.BrokerDatas) == 0 {
				t.Fatalf("while the control plane is down, sidecar %d resolves %s: %v %v", i, topic, r, err)
			}
		}
	}

	second := serveInProcess(t, args...)
	adminAddr := second.addr(t, "serving the admin API", 20*time.Second)
	second.waitLog(t, "serving xDS", 20*time.Second)
	// Every sidecar is back, each on a synced stream holding all its routes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var streams []cache.StreamStatus
		getJSON(t, "http://"+adminAddr+"/api/v1/proxies", &streams)
		synced := 0
		for _, s := range streams {
			ok := len(s.Types) > 0
			for _, ts := range s.Types {
				ok = ok && ts.State == cache.Synced
			}
			if ok {
				synced++
			}
		}
		if synced == sidecars {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sidecars synced with the restarted control plane", synced, sidecars)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The reconnect storm met the admission limit (24 streams, a burst of 5): some were told to come back later.
	fams := scrape(t, "http://"+adminAddr+"/metrics")
	refused := promtest.Sum(fams, "rocketpilot_xds_stream_admissions_total", map[string]string{"result": "rejected"})
	if refused == 0 {
		t.Fatal("no stream was refused by the admission limit: the storm did not exceed it")
	}
	// A change after the restart reaches the sidecar that uses the topic.
	topic := wanted[0][0]
	if err := ns.SetPerm(topic, "broker-a", remoting.PermRead); err != nil {
		t.Fatal(err)
	}
	eventuallyRoute(t, ctx, clients[0], topic, func(r *sidecar.Route) bool {
		for _, tg := range r.Send {
			if tg.BrokerName == "broker-a" {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if len(lost) > 0 {
		t.Fatalf("%d route events lost a topic or its brokers across the restart, first: %+v", len(lost), lost[0])
	}
	t.Logf("%d sidecars × %d topics across a restart: %d route events, none lost; %v reconnects refused by admission, retried",
		sidecars, perSidecar, seen, refused)
}

func eventuallyRoute(t *testing.T, ctx context.Context, sc *sidecar.Client, topic string, ok func(*sidecar.Route) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := sc.Route(ctx, topic)
		if err == nil && ok(r) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("route of %s never changed as expected: %+v %v", topic, r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

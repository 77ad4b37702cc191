package main

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// TestServeSharePolling runs three `serve --kubernetes --share-polling` replicas against a real kube-apiserver
// (envtest) and the demo NameServer: the Lease's holder alone polls (the NameServer's route queries are one
// poller's), sidecars of every replica resolve the demo topic and follow a change; the holder stopped, another
// replica takes the Lease and the polling, the remaining sidecars follow the next change, and the load is still
// one poller's.
func TestServeSharePolling(t *testing.T) {
	kubeconfig, k8s, ns, _ := kubeWithDemoSource(t, func(s *v1alpha1.NameServerSourceSpec) { s.PollInterval = &metav1.Duration{Duration: time.Second} })
	type replica struct {
		p   *inProcess
		xds string
		sc  *sidecar.Client
	}
	var replicas []*replica
	for range 3 {
		p := serveInProcess(t, "--kubernetes", "--kubeconfig", kubeconfig, "--leader-election-namespace", "default",
			"--leader-election-lease-duration", "2s", "--leader-election-renew-deadline", "1s", "--leader-election-retry-period", "200ms",
			"--share-polling", "--metrics-address", "")
		replicas = append(replicas, &replica{p: p})
	}
	for i, r := range replicas {
		r.xds = r.p.addr(t, "serving xDS", 60*time.Second)
		sc, err := sidecar.Dial(r.xds, sidecar.Options{NodeID: "share-" + string(rune('a'+i)), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		r.sc = sc
	}
	perm := func(want int32, rs []*replica, what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i, r := range rs {
			for {
				data, err := r.sc.Resolve(ctx, embedded.DemoTopic)
				if err == nil && permOf(data, "broker-b") == want {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("%s: replica %d's sidecar resolves %s with broker-b's perm %d (%v), want %d", what, i, embedded.DemoTopic, permOf(data, "broker-b"), err, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	perm(remoting.PermRead|remoting.PermWrite, replicas, "first sync")
	pollers := func(what string) {
		t.Helper()
		before := ns.RequestCount(remoting.GetRouteInfoByTopic)
		time.Sleep(3 * time.Second)
		n := (ns.RequestCount(remoting.GetRouteInfoByTopic) - before) / 3
		t.Logf("%s: %d route queries a second", what, n)
		// The demo's 121 topics every second: about 121 a second from one poller, 363 from three.
		if n > 180 || n < 60 {
			for i, r := range replicas {
				for _, line := range strings.Split(r.p.logs.String(), "\n") {
					if strings.Contains(line, "lead") || strings.Contains(line, "follow") || strings.Contains(line, "NameServer") || strings.Contains(line, "peer") {
						t.Logf("replica %d: %s", i, line)
					}
				}
			}
			t.Fatalf("%s: %d route queries a second, one poller makes about 121", what, n)
		}
	}
	pollers("three replicas")
	if err := ns.SetPerm(embedded.DemoTopic, "broker-b", remoting.PermRead); err != nil {
		t.Fatal(err)
	}
	perm(remoting.PermRead, replicas, "a change")

	// The holder goes (a rolling update's graceful stop: it releases the Lease).
	var lease coordinationv1.Lease
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "rocketpilot-leader"}, &lease); err != nil {
		t.Fatal(err)
	}
	holder := *lease.Spec.HolderIdentity
	var rest []*replica
	for _, r := range replicas {
		if strings.HasSuffix(holder, "@"+r.xds) {
			if err := r.p.stop(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rest = append(rest, r)
	}
	if len(rest) != 2 {
		t.Fatalf("the Lease's holder %q is not one of the replicas", holder)
	}
	if err := ns.SetPerm(embedded.DemoTopic, "broker-b", remoting.PermRead|remoting.PermWrite); err != nil {
		t.Fatal(err)
	}
	perm(remoting.PermRead|remoting.PermWrite, rest, "a change after the holder left")
	pollers("two replicas, a new holder")
}

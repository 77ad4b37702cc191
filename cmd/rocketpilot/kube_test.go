package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

// TestServeKubernetes runs `serve --kubernetes` against a real kube-apiserver (envtest): it reconciles a
// NameServerSource, waits for its first sync before serving xDS, and writes its status as the elected leader.
func TestServeKubernetes(t *testing.T) {
	kubeconfig, k8s, ns, nss := kubeWithDemoSource(t, nil)
	drain := &v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "drain"}, Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Exact: []string{embedded.DemoTopic}}, Drain: &v1alpha1.Drain{BrokerNames: []string{"broker-b"}}}}
	if err := k8s.Create(context.Background(), drain); err != nil {
		t.Fatal(err)
	}

	p := serveInProcess(t, "--kubernetes", "--kubeconfig", kubeconfig, "--leader-election-namespace", "default",
		"--leader-election-lease-duration", "2s", "--leader-election-renew-deadline", "1s", "--leader-election-retry-period", "200ms")
	p.waitLog(t, "serving xDS", 30*time.Second)
	admin := p.addr(t, "serving the admin API", time.Second)
	deadline := time.Now().Add(30 * time.Second)
	// Served only after the NameServerSource's first sync and the TopicRoute's reconcile: the topic and its
	// policy are there the moment xDS is.
	resp, err := http.Get("http://" + admin + "/api/v1/topics/" + embedded.DemoTopic)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"topicRoute": "default/drain"`) {
		t.Fatalf("TopicTest when xDS started serving: %s %s", resp.Status, body)
	}
	for {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(nss), nss); err != nil {
			t.Fatal(err)
		}
		if meta.IsStatusConditionTrue(nss.Status.Conditions, v1alpha1.ConditionReady) && nss.Status.Topics == int32(ns.TopicCount()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v\n%s", nss.Status, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Another holder takes the Lease: the replica loses leadership, and keeps serving.
	var lease coordinationv1.Lease
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "rocketpilot-leader"}, &lease); err != nil {
		t.Fatal(err)
	}
	thief, long := "someone-else", int32(3600)
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = &thief, &long
	now := metav1.NewMicroTime(time.Now())
	lease.Spec.RenewTime, lease.Spec.AcquireTime = &now, &now
	if err := k8s.Update(context.Background(), &lease); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "the controllers stopped; starting them again (xDS keeps serving the model)", 30*time.Second)
	select {
	case <-p.stopped:
		t.Fatalf("serve exited when it lost the lease: %v", p.err)
	case <-time.After(500 * time.Millisecond):
	}
	resp, err = http.Get("http://" + admin + "/api/v1/topics/" + embedded.DemoTopic)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after losing the lease: %s", resp.Status)
	}
}

// kubeWithDemoSource starts a kube-apiserver (envtest) and the demo NameServer, and creates NameServerSource
// default/demo naming it, its spec adjusted by spec when set.
func kubeWithDemoSource(t *testing.T, spec func(*v1alpha1.NameServerSourceSpec)) (kubeconfig string, k8s client.Client, ns *embedded.NameServer, nss *v1alpha1.NameServerSource) {
	t.Helper()
	env := kubetest.StartT(t)
	kubeconfig, k8s, ns = kubetest.Kubeconfig(t, env), kubetest.Client(t, env), demoNameServer(t)
	nss = &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "demo"},
		Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{ns.Addr()}}}
	if spec != nil {
		spec(&nss.Spec)
	}
	if err := k8s.Create(context.Background(), nss); err != nil {
		t.Fatal(err)
	}
	return kubeconfig, k8s, ns, nss
}

package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/workloadca"
)

// TestSidecarCertificateFromTheWorkloadCA is mutual TLS with no certificate handed out by hand, as the chart sets it
// up: rocketpilot serves xDS with mutual TLS and the identity check, and its workload CA on --ca-address; a Go
// sidecar with only the CA certificate and its pod's service account token (audience rocketpilot, made by a real
// kube-apiserver, which also reviews it) gets a certificate for spiffe://cluster.local/ns/team-a/sa/orders, opens
// its stream as node orders-1.team-a and routes. Its certificate lives 3 s: the sidecar renews it at two thirds of
// its life, and its open stream goes on carrying route changes throughout. A sidecar claiming a node of another
// namespace with the same token is refused.
func TestSidecarCertificateFromTheWorkloadCA(t *testing.T) {
	env := kubetest.StartT(t, filepath.Join("..", "..", "controllers", "testdata", "crds"))
	k8s := kubetest.Client(t, env)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubetest.ServiceAccount(t, cs, "team-a", "orders")
	token := kubetest.Token(t, cs, "team-a", "orders", workloadca.Audience, nil)
	ns := demoNameServer(t)
	nss := &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "demo"},
		Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{ns.Addr()}, PollInterval: &metav1.Duration{Duration: time.Second}}}
	if err := k8s.Create(ctx, nss); err != nil {
		t.Fatal(err)
	}

	s := newTLSSetup(t)
	files := certtest.Write(t, s.dir, "ca.key", s.ca.KeyPEM(t), "token", []byte(token))
	cp := serveInProcess(t, "--kubernetes", "--kubeconfig", kubetest.Kubeconfig(t, env), "--leader-election-namespace", "default",
		"--leader-election-lease-duration", "2s", "--leader-election-renew-deadline", "1s", "--leader-election-retry-period", "200ms",
		"--tls-cert", s.cert, "--tls-key", s.key, "--tls-client-ca", s.caFile,
		"--ca-address", "127.0.0.1:0", "--ca-cert", s.caFile, "--ca-key", files[0], "--ca-workload-ttl", "3s")
	xds := cp.addr(t, "serving xDS", 30*time.Second)
	caAddr := cp.addr(t, "serving the workload CA", time.Second)

	sc := sidecarInProcess(t, "--xds-server", xds, "--tls-ca", s.caFile, "--ca-server", "https://"+caAddr, "--token-file", files[1],
		"--node-id", "orders-1.team-a", "--namespace", "team-a")
	namesrv := sc.addr(t, "sidecar running", 10*time.Second)
	if !strings.Contains(sc.waitLog(t, "workload certificate", 10*time.Second), "spiffe://cluster.local/ns/team-a/sa/orders") {
		t.Fatal("the sidecar's certificate does not name its service account")
	}
	routes := func(topic string) *remoting.Command {
		return call(t, namesrv, remoting.GetRouteInfoByTopic, map[string]string{"topic": topic}, nil)
	}
	if r := routes("TopicTest"); r.Code != remoting.Success {
		t.Fatalf("route through the sidecar, certified by the workload CA: %d %s", r.Code, r.Remark)
	}
	streamsBefore := strings.Count(cp.logs.String(), `"msg":"xDS request refused"`)

	// Renewals while the stream is open: 3 s certificates renewed every 2 s, twice; a topic appearing afterwards
	// is routed over the same stream.
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(sc.logs.String(), `"msg":"workload certificate"`) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the certificate was not renewed twice:\n%s", sc.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ns.SetTopic("after-renewal", remoting.QueueData{BrokerName: "broker-a", ReadQueueNums: 2, WriteQueueNums: 2, Perm: 6})
	for deadline := time.Now().Add(15 * time.Second); routes("after-renewal").Code != remoting.Success; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a topic created after the renewals was never routed")
		}
	}
	if strings.Count(cp.logs.String(), `"msg":"xDS request refused"`) != streamsBefore {
		t.Fatal("a request was refused after the renewals")
	}

	// The same token cannot speak for a node of another namespace.
	other := sidecarInProcess(t, "--xds-server", xds, "--tls-ca", s.caFile, "--ca-server", "https://"+caAddr, "--token-file", files[1],
		"--node-id", "payments-1.team-b", "--namespace", "team-b")
	if r := call(t, other.addr(t, "sidecar running", 10*time.Second), remoting.GetRouteInfoByTopic, map[string]string{"topic": "TopicTest"}, nil); r.Code == remoting.Success {
		t.Fatal("a sidecar of team-a's service account was served as a node of team-b")
	}
	cp.waitLog(t, "xDS request refused", 10*time.Second)
	if !strings.Contains(cp.logs.String(), `payments-1.team-b`) {
		t.Fatal("the refusal does not name the node")
	}
}

package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

// TestServeKubernetes runs `serve --kubernetes` against a real kube-apiserver (envtest): it reconciles a
// NameServerSource, waits for its first sync before serving xDS, and writes its status as the elected leader.
func TestServeKubernetes(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		out, err := exec.Command(filepath.Join("..", "..", "hack", "envtest-assets.sh")).Output()
		if err != nil {
			t.Fatalf("envtest assets: %v", err)
		}
		assets = strings.TrimSpace(string(out))
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "crds", "manifests")},
		ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := coordinationv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := embedded.New(embedded.Options{})
	embedded.LoadDemo(ns)
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nss := &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "demo"},
		Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{ns.Addr()}}}
	if err := k8s.Create(context.Background(), nss); err != nil {
		t.Fatal(err)
	}
	drain := &v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "drain"}, Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Exact: []string{embedded.DemoTopic}}, Drain: &v1alpha1.Drain{BrokerNames: []string{"broker-b"}}}}
	if err := k8s.Create(context.Background(), drain); err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	root := newRootCommand()
	root.SetArgs([]string{"serve", "--kubernetes", "--kubeconfig", kubeconfig, "--leader-election-namespace", "default",
		"--leader-election-lease-duration", "2s", "--leader-election-renew-deadline", "1s", "--leader-election-retry-period", "200ms",
		"--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0", "--log-format", "json"})
	root.SetErr(&logs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() { cancel(); <-done }()

	re := regexp.MustCompile(`"msg":"serving the admin API","addr":"([^"]+)"`)
	deadline := time.Now().Add(30 * time.Second)
	var admin string
	for !strings.Contains(logs.String(), `"msg":"serving xDS"`) {
		if time.Now().After(deadline) {
			t.Fatalf("xDS not served:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	admin = re.FindStringSubmatch(logs.String())[1]
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
			t.Fatalf("status %+v\n%s", nss.Status, logs.String())
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
	for !strings.Contains(logs.String(), "the controllers stopped") {
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("leadership never lost:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("serve exited when it lost the lease: %v", err)
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

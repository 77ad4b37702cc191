package main

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	corev1 "k8s.io/api/core/v1"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
)

// TestGetKubernetesResources lists rocketpilot's custom resources through a real kube-apiserver (envtest).
func TestGetKubernetesResources(t *testing.T) {
	env := kubetest.StartT(t)
	kubeconfig := kubetest.Kubeconfig(t, env)
	k8s := kubetest.Client(t, env)
	ctx := context.Background()
	for _, ns := range []string{"shop", "billing"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, obj := range []client.Object{
		&v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "migrate"}, Spec: v1alpha1.TopicRouteSpec{
			Topics: v1alpha1.TopicSelector{Prefix: []string{"orders-"}},
			Send:   &v1alpha1.SendRule{Backends: []v1alpha1.Backend{{BrokerCluster: "A", Weight: ptr.To[int32](80)}, {BrokerCluster: "B", Weight: ptr.To[int32](20)}}}}},
		&v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "billing", Name: "drain"}, Spec: v1alpha1.TopicRouteSpec{
			Topics: v1alpha1.TopicSelector{Exact: []string{"invoices"}}, Drain: &v1alpha1.Drain{BrokerNames: []string{"broker-c"}}}},
		&v1alpha1.TopicBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}, Spec: v1alpha1.TopicBindingSpec{
			NodeIDs: []string{"orders-*"}, Topics: []string{"orders-eu"}}},
		&v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "prod"}, Spec: v1alpha1.NameServerSourceSpec{
			Addresses: []string{"10.0.0.1:9876"}}},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	s := served{admin: "127.0.0.1:1", xds: "127.0.0.1:1"} // the Kubernetes kinds need neither
	kube := func(args ...string) string {
		return mustCtl(t, s, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	}
	if out := kube("get", "topicroutes", "-n", "shop"); !strings.Contains(out, "NAME      ACCEPTED   RESOLVED   TOPICS   AGE") ||
		!strings.Contains(out, "migrate") || strings.Contains(out, "drain") {
		t.Fatalf("get topicroutes -n shop:\n%s", out)
	}
	if out := kube("get", "tr", "-A"); !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, "billing") || !strings.Contains(out, "shop") {
		t.Fatalf("get tr -A:\n%s", out)
	}
	if out := kube("get", "nss", "-n", "shop", "-o", "name"); out != "nameserversource.rocketpilot.io/prod\n" {
		t.Fatalf("get nss -o name: %q", out)
	}
	if out := kube("get", "topicbindings", "orders", "-n", "shop", "-o", "yaml"); !strings.Contains(out, "orders-*") {
		t.Fatalf("get topicbindings -o yaml:\n%s", out)
	}
	if _, errOut, code := ctl(t, s, "--kubeconfig", kubeconfig, "get", "tr", "nope", "-n", "shop"); code == 0 || !strings.Contains(errOut, `"nope" not found`) {
		t.Fatalf("get tr nope: exit %d %q", code, errOut)
	}
}

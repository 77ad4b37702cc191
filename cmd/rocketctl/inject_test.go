package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/workloadca"
)

const workloads = `apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, namespace: shop}
spec:
  selector: {matchLabels: {app: orders}}
  template:
    metadata: {labels: {app: orders}}
    spec:
      containers:
      - name: app
        image: orders:1
        env: [{name: NAMESRV_ADDR, value: "10.0.0.1:9876"}, {name: LOG, value: info}]
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {selector: {app: orders}, ports: [{port: 80}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: report, image: report:1}]
`

// kube-inject adds the native sidecar, its downward API volume and NAMESRV_ADDR to every pod template, leaves
// other documents alone, is idempotent, and what it prints is accepted by a real kube-apiserver (envtest).
func TestKubeInject(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(file, []byte(workloads), 0o644); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runInject(t, "kube-inject", "-f", file, "--image", "rp:test", "--control-plane", "rp.rocketmq-system.svc:18000", "--ca-cert", caFile)
	docs := splitYAML([]byte(out))
	if len(docs) != 4 {
		t.Fatalf("%d documents out, want 3 and the CA's ConfigMap:\n%s", len(docs), out)
	}
	var caRoot corev1.ConfigMap
	if err := yaml.UnmarshalStrict(docs[3], &caRoot); err != nil {
		t.Fatal(err)
	}
	if caRoot.Name != "rocketpilot-ca-root" || caRoot.Namespace != "shop" || !strings.Contains(caRoot.Data["ca.crt"], "BEGIN CERTIFICATE") {
		t.Fatalf("the CA's ConfigMap: %+v", caRoot)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(docs[0], &dep); err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template.Spec
	if dep.Spec.Template.Labels[sidecarLabel] != "true" || dep.Spec.Template.Labels["app"] == "" {
		t.Fatalf("pod labels %v: the sidecar label added (the chart's NetworkPolicy admits it to xDS), the others kept", dep.Spec.Template.Labels)
	}
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != sidecarName || pod.InitContainers[0].Image != "rp:test" ||
		pod.InitContainers[0].RestartPolicy == nil || *pod.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("init containers %+v", pod.InitContainers)
	}
	if args := strings.Join(pod.InitContainers[0].Args, " "); !strings.Contains(args, "--xds-server rp.rocketmq-system.svc:18000") ||
		!strings.Contains(args, "--labels-file /etc/rocketpilot/podinfo/labels") {
		t.Fatalf("sidecar args %q", args)
	}
	env := map[string]string{}
	for _, e := range pod.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["NAMESRV_ADDR"] != "127.0.0.1:9876" || env["LOG"] != "info" || len(pod.Containers[0].Env) != 2 {
		t.Fatalf("application env %+v: NAMESRV_ADDR must point at the sidecar, the rest kept", pod.Containers[0].Env)
	}
	sc := pod.InitContainers[0]
	if sc.StartupProbe == nil || sc.StartupProbe.HTTPGet == nil || sc.StartupProbe.HTTPGet.Port.IntValue() != sidecarAdminPort ||
		!strings.Contains(strings.Join(sc.Args, " "), fmt.Sprintf("--admin-address :%d", sidecarAdminPort)) {
		t.Fatalf("the startup probe must reach the admin port on the pod's address: %+v, args %v", sc.StartupProbe, sc.Args)
	}
	// Mutual TLS by default, as the chart serves: the CA certificate from the ConfigMap, a projected token of the
	// workload CA's audience, and the CA's address on the control plane's host.
	if len(pod.Volumes) != 3 || pod.Volumes[0].DownwardAPI == nil || pod.Volumes[1].ConfigMap == nil ||
		pod.Volumes[1].ConfigMap.Name != "rocketpilot-ca-root" || pod.Volumes[2].Projected == nil ||
		pod.Volumes[2].Projected.Sources[0].ServiceAccountToken.Audience != workloadca.Audience {
		t.Fatalf("volumes %+v", pod.Volumes)
	}
	if args := strings.Join(sc.Args, " "); !strings.Contains(args, "--ca-server https://rp.rocketmq-system.svc:18001") ||
		!strings.Contains(args, "--tls-ca /etc/rocketpilot/ca-root/ca.crt") || !strings.Contains(args, "--token-file /var/run/secrets/rocketpilot/token") {
		t.Fatalf("sidecar args %q", args)
	}
	plain := runInject(t, "kube-inject", "-f", file, "--tls=false")
	if strings.Contains(plain, "--ca-server") || strings.Contains(plain, "rocketpilot-token") || len(splitYAML([]byte(plain))) != 3 {
		t.Fatalf("--tls=false still adds TLS:\n%s", plain)
	}
	if !bytes.Contains(docs[1], []byte("kind: Service")) || bytes.Contains(docs[1], []byte(sidecarName)) {
		t.Fatalf("the Service changed:\n%s", docs[1])
	}
	var cron batchv1.CronJob
	if err := yaml.UnmarshalStrict(docs[2], &cron); err != nil {
		t.Fatal(err)
	}
	if ic := cron.Spec.JobTemplate.Spec.Template.Spec.InitContainers; len(ic) != 1 || ic[0].Name != sidecarName {
		t.Fatalf("the CronJob's pod template: %+v", ic)
	}

	// Injecting the output again changes nothing.
	again := filepath.Join(t.TempDir(), "again.yaml")
	if err := os.WriteFile(again, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if twice := runInject(t, "kube-inject", "-f", again, "--image", "rp:test", "--control-plane", "rp.rocketmq-system.svc:18000"); twice != out {
		t.Fatalf("a second injection changed the output:\n%s", twice)
	}

	// A real kube-apiserver accepts the injected workloads.
	env8s := kubetest.StartT(t)
	k8s := kubetest.Client(t, env8s)
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{&dep, &cron} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("the apiserver refused the injected %T: %v", obj, err)
		}
	}
}

func runInject(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand(&out, &errOut)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("rocketctl %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

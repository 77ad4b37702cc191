// Package chart tests the Helm chart charts/rocketpilot: helm lint and helm template with each values file of
// ci/, the properties of what it renders, its schema, and that a real API server (envtest) accepts every manifest.
package chart

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/internal/helmtest"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/workloadca"
)

// Where the chart mounts the serving certificate's Secret and the workload CA's.
const tlsDir, caDir = "/etc/rocketpilot/tls", "/etc/rocketpilot/ca"

// The Secrets the chart generates (or cert-manager issues) for release Release, and the annotation that dates the
// serving certificate.
const (
	caSecret    = helmtest.Release + "-ca"
	tlsSecret   = helmtest.Release + "-tls"
	notAfterKey = "rocketpilot.io/tls-not-after"
)

// serviceDNSNames are the Service's DNS names, which the serving certificate must name.
func serviceDNSNames(svc string) []string {
	ns := helmtest.Namespace
	return []string{svc, svc + "." + ns, svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"}
}

// variants are the renders the tests check: the default values, each values file of ci/, and --set variations.
var variants = []struct {
	name string
	args []string
}{
	{"default", nil},
	{"ha", []string{"--values", "ci/ha-values.yaml"}},
	{"tls", []string{"--values", "ci/tls-values.yaml"}},
	{"tls-no-client-ca", []string{"--values", "ci/tls-values.yaml", "--set", "tls.clientCA=false", "--set", "pprof=false"}},
	{"cert-manager", []string{"--values", "ci/cert-manager-values.yaml"}},
	{"plaintext", []string{"--set", "tls.enabled=false"}},
	{"no-network-policy", []string{"--set", "networkPolicy.enabled=false"}},
	{"admin-peers", []string{"--set", "networkPolicy.adminFrom.releaseNamespace=false", "--set", "networkPolicy.adminFrom.namespaces={monitoring,ops}",
		"--set", "networkPolicy.adminFrom.extraFrom[0].ipBlock.cidr=10.0.0.0/8"}},
	{"watch-namespace", []string{"--set", "watchNamespace=team-a"}},
	{"no-leader-election", []string{"--set", "leaderElection.enabled=false", "--set", "replicaCount=1"}},
	{"no-workload-ca", []string{"--set", "workloadCA.enabled=false"}},
	{"workload-ca-settings", []string{"--set", "workloadCA.port=8443", "--set", "workloadCA.trustDomain=prod.example.org", "--set", "workloadCA.ttl=6h"}},
	{"own-tls-no-workload-ca", []string{"--set", "tls.secretName=my-cert", "--set", "workloadCA.enabled=false"}},
	{"watch-namespace-no-workload-ca", []string{"--set", "watchNamespace=team-a", "--set", "workloadCA.enabled=false"}},
}

// workloadCAOn tells whether a variant's render runs the workload CA.
func workloadCAOn(args []string) bool {
	return !slices.Contains(args, "workloadCA.enabled=false") && !slices.Contains(args, "tls.enabled=false")
}

func render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := helmtest.Template(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// typed converts a rendered object into its Go type, rejecting fields the type does not have.
func typed[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	u := helmtest.Find(objs, kind, name)
	if u == nil {
		t.Fatalf("no %s %s rendered; rendered: %s", kind, name, names(objs))
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", kind, name, err)
	}
	return out
}

func names(objs []*unstructured.Unstructured) string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	return strings.Join(out, ", ")
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	slices.Sort(out)
	return out
}

func container(t *testing.T, dep *appsv1.Deployment) corev1.Container {
	t.Helper()
	if n := len(dep.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return dep.Spec.Template.Spec.Containers[0]
}

func hasArg(args []string, prefix string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
}

func wantArgs(t *testing.T, args []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(args, w) {
			t.Errorf("args lack %q: %q", w, args)
		}
	}
}

func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(helmtest.ChartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil {
		t.Fatal(err)
	}
	return chart.AppVersion
}

func TestHelmLint(t *testing.T) {
	for _, values := range [][]string{nil, {"ci/ha-values.yaml"}, {"ci/tls-values.yaml"}, {"ci/cert-manager-values.yaml"}} {
		t.Run(fmt.Sprint(values), func(t *testing.T) {
			out := helmtest.Lint(t, values...)
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint:\n%s", out)
			}
		})
	}
}

func TestChartDefaults(t *testing.T) {
	objs := render(t)
	if got, want := kinds(objs), []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
		"Role", "RoleBinding", "Secret", "Secret", "Service", "ServiceAccount"}; !slices.Equal(got, want) {
		t.Fatalf("kinds %v, want %v", got, want)
	}
	for _, o := range objs {
		namespaced := !strings.HasPrefix(o.GetKind(), "Cluster")
		if namespaced && o.GetNamespace() != helmtest.Namespace || !namespaced && o.GetNamespace() != "" {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
		if o.GetLabels()["app.kubernetes.io/instance"] != helmtest.Release || o.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s %s labels %v", o.GetKind(), o.GetName(), o.GetLabels())
		}
	}
	dep := typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	c := container(t, dep)
	if c.Image != "ghcr.io/rocketpilot/rocketpilot:"+appVersion(t) || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s (%s)", c.Image, c.ImagePullPolicy)
	}
	if len(c.Command) != 0 || len(c.Args) < 2 || c.Args[0] != "serve" || c.Args[1] != "--kubernetes" {
		t.Errorf("command %q args %q, want the image's entrypoint with serve --kubernetes", c.Command, c.Args)
	}
	wantArgs(t, c.Args, "--xds-address=:18000", "--admin-address=:19000", "--metrics-address=:19001",
		"--log-level=info", "--log-format=json", "--discovery=all",
		"--leader-elect=true", "--leader-election-namespace="+helmtest.Namespace, "--leader-election-id=rocketpilot-leader",
		"--shutdown-delay=5s", "--shutdown-grace=10s")
	// Secure by default: TLS with client certificates, from the Secret the chart generates, and the workload CA
	// signing with the chart's CA.
	checkServesTLS(t, dep, tlsSecret, true)
	checkWorkloadCA(t, dep, caSecret, false)
	wantArgs(t, c.Args, "--ca-address=:18001", "--ca-trust-domain=cluster.local", "--ca-workload-ttl=24h")
	for _, absent := range []string{"--admin-operators", "--pprof", "--namesrv", "--watch-namespace", "--leader-elect=false",
		"--transient-object-life-span", "--share-polling"} {
		if hasArg(c.Args, absent) {
			t.Errorf("default args hold %s: %q", absent, c.Args)
		}
	}
	// The pod is killed only after the shutdown delay and the streams' grace have run out.
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g <= 5+10 {
		t.Errorf("terminationGracePeriodSeconds %v, want more than 15", g)
	}
	// A Service named rocketpilot would give the pod ROCKETPILOT_SERVICE_HOST and the like; ROCKETPILOT_* are flags.
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("enableServiceLinks %v, want false", pod.EnableServiceLinks)
	}
	if pod.ServiceAccountName != helmtest.Release || pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Errorf("serviceAccountName %q automount %v", pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	typed[corev1.ServiceAccount](t, objs, "ServiceAccount", pod.ServiceAccountName)

	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext %+v", sc)
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", psc)
	}

	for name, p := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"readiness": {c.ReadinessProbe, "/readyz"}, "liveness": {c.LivenessProbe, "/healthz"}, "startup": {c.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" ||
			p.probe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v, want GET %s on the admin port over HTTPS", name, p.probe, p.path)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAMESPACE"] != "metadata.namespace" || env["POD_NAME"] != "metadata.name" {
		t.Errorf("downward API env %v", env)
	}
	for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if rl.Cpu().IsZero() || rl.Memory().IsZero() {
			t.Errorf("resources %+v: want cpu and memory requests and limits", c.Resources)
		}
	}
	if c.Resources.Requests.Memory().Cmp(*c.Resources.Limits.Memory()) > 0 || c.Resources.Requests.Cpu().Cmp(*c.Resources.Limits.Cpu()) > 0 {
		t.Errorf("requests above limits: %+v", c.Resources)
	}

	selector := dep.Spec.Selector.MatchLabels
	podLabels := dep.Spec.Template.Labels
	for k, v := range selector {
		if podLabels[k] != v {
			t.Errorf("selector %v does not select the pod labels %v", selector, podLabels)
		}
	}
	if len(pod.TopologySpreadConstraints) != 1 {
		t.Fatalf("topologySpreadConstraints %+v", pod.TopologySpreadConstraints)
	}
	tsc := pod.TopologySpreadConstraints[0]
	if tsc.TopologyKey != corev1.LabelHostname || tsc.WhenUnsatisfiable != corev1.ScheduleAnyway || tsc.LabelSelector == nil ||
		!maps.Equal(tsc.LabelSelector.MatchLabels, selector) {
		t.Errorf("topology spread %+v, want by hostname, ScheduleAnyway, over the pods' selector %v", tsc, selector)
	}

	svc := typed[corev1.Service](t, objs, "Service", helmtest.Release)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || !maps.Equal(svc.Spec.Selector, selector) {
		t.Errorf("service type %s selector %v", svc.Spec.Type, svc.Spec.Selector)
	}
	containerPorts := map[string]int32{}
	for _, p := range c.Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	ports := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = p
		if containerPorts[p.TargetPort.String()] != p.Port {
			t.Errorf("service port %s targets %s, which the container does not expose as %d (%v)", p.Name, p.TargetPort.String(), p.Port, containerPorts)
		}
	}
	if p := ports["xds-grpc"]; p.Port != 18000 || p.AppProtocol == nil || *p.AppProtocol != "grpc" {
		t.Errorf("xds-grpc port %+v", p)
	}
	if ports["admin"].Port != 19000 || ports["metrics"].Port != 19001 || ports["ca"].Port != 18001 || len(ports) != 4 {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}
	if containerPorts["ca"] != 18001 {
		t.Errorf("container ports %v, want the workload CA's (ca) on 18001", containerPorts)
	}
	for _, name := range []string{"admin", "metrics", "ca"} {
		if p := ports[name]; p.AppProtocol == nil || *p.AppProtocol != "https" {
			t.Errorf("%s port %+v, want appProtocol https", name, p)
		}
	}

	pdb := typed[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", helmtest.Release)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MaxUnavailable != nil ||
		!maps.Equal(pdb.Spec.Selector.MatchLabels, selector) {
		t.Errorf("PDB %+v", pdb.Spec)
	}
}

func TestChartHA(t *testing.T) {
	objs := helmtest.Render(t, "ci/ha-values.yaml")
	b, err := os.ReadFile(filepath.Join(helmtest.ChartDir(t), "ci", "ha-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Namesrv []string `json:"namesrv"`
	}
	if err := yaml.Unmarshal(b, &values); err != nil || len(values.Namesrv) < 2 {
		t.Fatalf("ci/ha-values.yaml namesrv %v: %v", values.Namesrv, err)
	}
	dep := typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	if *dep.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", *dep.Spec.Replicas)
	}
	c := container(t, dep)
	wantArgs(t, c.Args, "--discovery=in-use", "--namesrv="+strings.Join(values.Namesrv, ";"), "--log-level=debug",
		"--leader-elect=true", "--share-polling", "--peer-server-name="+helmtest.Release+"."+helmtest.Namespace+".svc")
	// Shared polling: the Lease's holder names its pod IP, and the other replicas reach its xDS port.
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_IP" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP"
	}) {
		t.Errorf("no POD_IP from status.podIP in %v", c.Env)
	}
	selfAllowed := false
	for _, rule := range networkPolicy(t, objs).Spec.Ingress {
		for _, peer := range rule.From {
			if peer.NamespaceSelector == nil && peer.PodSelector != nil && maps.Equal(peer.PodSelector.MatchLabels, dep.Spec.Selector.MatchLabels) &&
				slices.Contains(ingressPorts(rule), "TCP/18000") {
				selfAllowed = true
			}
		}
	}
	if !selfAllowed {
		t.Error("the NetworkPolicy does not let the replicas reach each other's xDS port (their peer service)")
	}
	pdb := typed[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", helmtest.Release)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 {
		t.Errorf("PDB minAvailable %v, want 2", pdb.Spec.MinAvailable)
	}
	sm := helmtest.Find(objs, "ServiceMonitor", helmtest.Release)
	if sm == nil || sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Fatalf("no monitoring.coreos.com/v1 ServiceMonitor: %s", names(objs))
	}
	svc := typed[corev1.Service](t, objs, "Service", helmtest.Release)
	// TLS by default: Prometheus checks the generated certificate against its CA.
	endpoint := serviceMonitorEndpoint(t, sm)
	serverName, _, _ := unstructured.NestedString(endpoint, "tlsConfig", "serverName")
	caSecretName, _, _ := unstructured.NestedString(endpoint, "tlsConfig", "ca", "secret", "name")
	if endpoint["port"] != "metrics" || endpoint["path"] != "/metrics" || endpoint["scheme"] != "https" ||
		serverName != helmtest.Release+"."+helmtest.Namespace+".svc" || caSecretName != tlsSecret {
		t.Errorf("ServiceMonitor endpoint %v, want https to the Service's name with the CA of %s", endpoint, tlsSecret)
	}
	if helmtest.Find(objs, "Secret", tlsSecret) == nil {
		t.Errorf("no Secret %s for the ServiceMonitor's CA: %s", tlsSecret, names(objs))
	}
	// Prometheus's namespace reaches the metrics port.
	if got := adminNamespaces(t, networkPolicy(t, objs)); !slices.Equal(got, []string{helmtest.Namespace, "monitoring"}) {
		t.Errorf("admin and metrics ports open to the namespaces %v, want the release's and monitoring", got)
	}
	matchLabels, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range matchLabels {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", matchLabels, svc.Labels)
		}
	}
	if ns, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames"); !slices.Equal(ns, []string{helmtest.Namespace}) {
		t.Errorf("ServiceMonitor namespaceSelector %v", ns)
	}
}

func serviceMonitorEndpoint(t *testing.T, sm *unstructured.Unstructured) map[string]any {
	t.Helper()
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", eps)
	}
	return eps[0].(map[string]any)
}

func TestChartTLS(t *testing.T) {
	objs := helmtest.Render(t, "ci/tls-values.yaml")
	dep := typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	c := container(t, dep)
	// The Secret of ci/tls-values.yaml is the user's: the same name as the generated one, but nothing generated.
	// The workload CA signs with the CA Secret it names.
	checkServesTLS(t, dep, "rocketpilot-tls", true)
	checkWorkloadCA(t, dep, "rocketpilot-workload-ca", false)
	wantArgs(t, c.Args, "--pprof", "--admin-operators=platform-oncall")
	if got := helmtest.OfKind(objs, "Secret", "Certificate", "Issuer"); len(got) != 0 {
		t.Errorf("rendered %s with tls.secretName given", names(got))
	}
	sm := helmtest.Find(objs, "ServiceMonitor", helmtest.Release)
	if sm == nil {
		t.Fatalf("no ServiceMonitor: %s", names(objs))
	}
	endpoint := serviceMonitorEndpoint(t, sm)
	serverName, _, _ := unstructured.NestedString(endpoint, "tlsConfig", "serverName")
	caSecretName, _, _ := unstructured.NestedString(endpoint, "tlsConfig", "ca", "secret", "name")
	if endpoint["scheme"] != "https" || serverName != helmtest.Release+"."+helmtest.Namespace+".svc" || caSecretName != "rocketpilot-tls" {
		t.Errorf("ServiceMonitor endpoint %v, want https with the Service's name and the secret's CA", endpoint)
	}

	// Without a client CA the server still serves TLS, and asks for no client certificate.
	objs = render(t, "--values", "ci/tls-values.yaml", "--set", "tls.clientCA=false", "--set", "pprof=false")
	checkServesTLS(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release), "rocketpilot-tls", false)

	// Any name: the Deployment mounts it and nothing is generated. The chart then has no CA for the workload CA:
	// the user names one, or turns it off; the render fails without either.
	objs = render(t, "--set", "tls.secretName=my-cert", "--set", "workloadCA.secretName=my-ca")
	dep = typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	checkServesTLS(t, dep, "my-cert", true)
	checkWorkloadCA(t, dep, "my-ca", false)
	if got := helmtest.OfKind(objs, "Secret", "Certificate", "Issuer"); len(got) != 0 {
		t.Errorf("rendered %s with tls.secretName given", names(got))
	}
	objs = render(t, "--set", "tls.secretName=my-cert", "--set", "workloadCA.enabled=false")
	dep = typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	checkServesTLS(t, dep, "my-cert", true)
	checkNoWorkloadCA(t, objs)
	objs, err := helmtest.Template(t, "--set", "tls.secretName=my-cert")
	if err == nil || !strings.Contains(err.Error(), "workloadCA.enabled") || !strings.Contains(err.Error(), "workloadCA.secretName") {
		t.Errorf("tls.secretName without workloadCA.secretName: rendered %s, err %v; want an error naming workloadCA.secretName", names(objs), err)
	}
}

// checkWorkloadCA checks the Deployment runs the workload CA: the CA of the Secret secretName (ca.crt and ca.key;
// cert-manager's tls.crt and tls.key when certManager) mounted read-only at caDir, serve's flags naming those files,
// and its port.
func checkWorkloadCA(t *testing.T, dep *appsv1.Deployment, secretName string, certManager bool) {
	t.Helper()
	c := container(t, dep)
	wantArgs(t, c.Args, "--ca-cert="+caDir+"/ca.crt", "--ca-key="+caDir+"/ca.key")
	for _, flag := range []string{"--ca-address=:", "--ca-trust-domain=", "--ca-workload-ttl="} {
		if !hasArg(c.Args, flag) {
			t.Errorf("args lack %s…: %q", flag, c.Args)
		}
	}
	var mount *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if m.MountPath == caDir {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Fatalf("volume mounts %+v, want the CA read-only at %s", c.VolumeMounts, caDir)
	}
	var vol *corev1.Volume
	for i, v := range dep.Spec.Template.Spec.Volumes {
		if v.Name == mount.Name {
			vol = &dep.Spec.Template.Spec.Volumes[i]
		}
	}
	crt, key := "ca.crt", "ca.key"
	if certManager {
		crt, key = "tls.crt", "tls.key"
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != secretName || vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode != 0o440 ||
		!slices.Equal(vol.Secret.Items, []corev1.KeyToPath{{Key: crt, Path: "ca.crt"}, {Key: key, Path: "ca.key"}}) {
		t.Errorf("the CA volume %+v, want the Secret %s with %s and %s as ca.crt and ca.key", vol, secretName, crt, key)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if p := ports["ca"]; p == 0 || !slices.Contains(c.Args, fmt.Sprintf("--ca-address=:%d", p)) {
		t.Errorf("container ports %v, want ca on the port of --ca-address (%q)", ports, c.Args)
	}
}

// checkNoWorkloadCA checks a render runs no workload CA: no flag, mount, port or TokenReview grant.
func checkNoWorkloadCA(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	dep := typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	c := container(t, dep)
	if hasArg(c.Args, "--ca-") {
		t.Errorf("workload CA flags: %q", c.Args)
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == caDir {
			t.Errorf("the CA is mounted: %+v", c.VolumeMounts)
		}
	}
	for _, p := range c.Ports {
		if p.Name == "ca" {
			t.Errorf("container port %+v", p)
		}
	}
	for _, p := range typed[corev1.Service](t, objs, "Service", helmtest.Release).Spec.Ports {
		if p.Name == "ca" {
			t.Errorf("Service port %+v", p)
		}
	}
	for _, o := range helmtest.OfKind(objs, "ClusterRole", "Role") {
		if strings.Contains(fmt.Sprint(o.Object["rules"]), "tokenreviews") {
			t.Errorf("%s %s grants tokenreviews", o.GetKind(), o.GetName())
		}
	}
}

// checkServesTLS checks the Deployment serves every port over TLS with the certificate of the Secret secretName,
// mounted read-only, asks for client certificates signed by its ca.crt when clientCA, and probes over HTTPS.
func checkServesTLS(t *testing.T, dep *appsv1.Deployment, secretName string, clientCA bool) {
	t.Helper()
	c := container(t, dep)
	wantArgs(t, c.Args, "--tls-cert="+tlsDir+"/tls.crt", "--tls-key="+tlsDir+"/tls.key")
	if clientCA {
		wantArgs(t, c.Args, "--tls-client-ca="+tlsDir+"/ca.crt")
	} else if hasArg(c.Args, "--tls-client-ca") {
		t.Errorf("--tls-client-ca without tls.clientCA: %q", c.Args)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v, want HTTPS (the admin port serves TLS)", name, p)
		}
	}
	// The serving certificate, and the workload CA's when it runs (checkWorkloadCA), nothing else.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	caMounted, want := hasArg(c.Args, "--ca-address"), 1
	if caMounted {
		want = 2
	}
	if m, ok := mounts[tlsDir]; !ok || !m.ReadOnly || len(mounts) != want {
		t.Fatalf("volume mounts %+v, want the TLS Secret read-only at %s (and the CA at %s with the workload CA)", c.VolumeMounts, tlsDir, caDir)
	}
	if _, ok := mounts[caDir]; ok != caMounted {
		t.Errorf("volume mounts %+v with args %q: the CA is mounted without the workload CA, or the other way round", c.VolumeMounts, c.Args)
	}
	vols := dep.Spec.Template.Spec.Volumes
	if len(vols) != len(c.VolumeMounts) {
		t.Errorf("volumes %+v for the mounts %+v", vols, c.VolumeMounts)
	}
	var vol *corev1.Volume
	for i, v := range vols {
		if v.Name == mounts[tlsDir].Name {
			vol = &vols[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != secretName || len(vol.Secret.Items) != 0 ||
		vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode != 0o440 {
		t.Errorf("volumes %+v, want the Secret %s", vols, secretName)
	}
}

func parseCert(t *testing.T, what string, b []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: not one PEM certificate: %q", what, b)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return cert
}

// checkGeneratedSecrets checks the chart's CA Secret and serving certificate Secret: the CA is a CA of 10 years
// whose key is ca.key, and the serving certificate, a leaf of 1 year dated by the annotation notAfterKey, is
// signed by it for every DNS name of the Service svc and no other. It returns both certificates.
func checkGeneratedSecrets(t *testing.T, ca, srv *corev1.Secret, svc string) (caCert, leaf *x509.Certificate) {
	t.Helper()
	if ca.Type != corev1.SecretTypeOpaque || !slices.Equal(slices.Sorted(maps.Keys(ca.Data)), []string{"ca.crt", "ca.key"}) {
		t.Errorf("Secret %s: type %s keys %v, want Opaque with ca.crt and ca.key", ca.Name, ca.Type, slices.Sorted(maps.Keys(ca.Data)))
	}
	if srv.Type != corev1.SecretTypeTLS || !slices.Equal(slices.Sorted(maps.Keys(srv.Data)), []string{"ca.crt", "tls.crt", "tls.key"}) {
		t.Errorf("Secret %s: type %s keys %v, want kubernetes.io/tls with tls.crt, tls.key and ca.crt", srv.Name, srv.Type, slices.Sorted(maps.Keys(srv.Data)))
	}
	caCert = parseCert(t, ca.Name+" ca.crt", ca.Data["ca.crt"])
	if !caCert.IsCA || caCert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("ca.crt is not a CA: IsCA %v key usage %v", caCert.IsCA, caCert.KeyUsage)
	}
	if _, err := tls.X509KeyPair(ca.Data["ca.crt"], ca.Data["ca.key"]); err != nil {
		t.Errorf("ca.key is not the key of ca.crt: %v", err)
	}
	if !bytes.Equal(srv.Data["ca.crt"], ca.Data["ca.crt"]) {
		t.Errorf("ca.crt of %s is not that of %s", srv.Name, ca.Name)
	}
	if _, err := tls.X509KeyPair(srv.Data["tls.crt"], srv.Data["tls.key"]); err != nil {
		t.Errorf("tls.key is not the key of tls.crt: %v", err)
	}
	leaf = parseCert(t, srv.Name+" tls.crt", srv.Data["tls.crt"])
	if leaf.IsCA {
		t.Errorf("the serving certificate is a CA")
	}
	day := 24 * time.Hour
	if d := caCert.NotAfter.Sub(caCert.NotBefore); d < 3650*day-day || d > 3650*day+day || caCert.NotAfter.Before(time.Now().Add(3649*day)) {
		t.Errorf("CA valid %v to %v, want 10 years from now", caCert.NotBefore, caCert.NotAfter)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 365*day-day || d > 365*day+day || leaf.NotAfter.Before(time.Now().Add(30*day)) {
		t.Errorf("serving certificate valid %v to %v, want 1 year", leaf.NotBefore, leaf.NotAfter)
	}
	// The annotation that decides re-issuing never says later than the certificate does.
	notAfter, err := time.Parse(time.RFC3339, srv.Annotations[notAfterKey])
	if err != nil || notAfter.After(leaf.NotAfter) || leaf.NotAfter.Sub(notAfter) > time.Minute {
		t.Errorf("annotation %s %q (%v), certificate's NotAfter %v", notAfterKey, srv.Annotations[notAfterKey], err, leaf.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	for _, name := range serviceDNSNames(svc) {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the serving certificate for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other." + helmtest.Namespace + ".svc", Roots: roots}); err == nil {
		t.Errorf("the serving certificate verifies for another Service (names %v)", leaf.DNSNames)
	}
	return caCert, leaf
}

// checkSignsWorkloadCertificates loads the CA Secret's ca.crt and ca.key as serve's workload CA does (the files the
// Deployment mounts) and signs a sidecar's certificate with it: the ca.crt of the serving certificate's Secret, which
// the server verifies client certificates with, accepts it as a client certificate.
func checkSignsWorkloadCertificates(t *testing.T, ca, srv *corev1.Secret) {
	t.Helper()
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	for f, b := range map[string][]byte{crt: ca.Data["ca.crt"], key: ca.Data["ca.key"]} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	authority, err := workloadca.Load(crt, key, nil, workloadca.Options{})
	if err != nil {
		t.Fatalf("the workload CA does not load the chart's CA: %v", err)
	}
	sidecarKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, sidecarKey)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := authority.Sign(csr, workloadca.Identity{Namespace: "team-a", ServiceAccount: "orders", Pod: "orders-1"})
	if err != nil {
		t.Fatalf("the chart's CA signs no workload certificate: %v", err)
	}
	block, _ := pem.Decode(chain)
	if block == nil {
		t.Fatalf("no certificate in %q", chain)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(srv.Data["ca.crt"]) {
		t.Fatalf("no CA in ca.crt of %s", srv.Name)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("a workload certificate of the chart's CA, checked with ca.crt of %s: %v", srv.Name, err)
	}
	if len(leaf.URIs) != 2 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/team-a/node/orders-1.team-a" || leaf.URIs[1].String() != "urn:rocketpilot:pod-labels:" {
		t.Errorf("the workload certificate names %v", leaf.URIs)
	}
}

// TestChartGeneratedCertificates: with the default values the chart generates a CA and a serving certificate
// signed by it for the Service's DNS names (those of fullnameOverride when given).
func TestChartGeneratedCertificates(t *testing.T) {
	for _, svc := range []string{helmtest.Release, "xds-cp"} {
		t.Run(svc, func(t *testing.T) {
			objs := render(t, "--set", "fullnameOverride="+svc)
			ca := typed[corev1.Secret](t, objs, "Secret", svc+"-ca")
			srv := typed[corev1.Secret](t, objs, "Secret", svc+"-tls")
			checkGeneratedSecrets(t, ca, srv, svc)
			checkServesTLS(t, typed[appsv1.Deployment](t, objs, "Deployment", svc), svc+"-tls", true)
			checkWorkloadCA(t, typed[appsv1.Deployment](t, objs, "Deployment", svc), svc+"-ca", false)
			checkSignsWorkloadCertificates(t, ca, srv)
			if got := helmtest.OfKind(objs, "Certificate", "Issuer"); len(got) != 0 {
				t.Errorf("rendered %s without certManager.enabled", names(got))
			}
		})
	}
}

// TestChartCertManager: with certManager.enabled, cert-manager issues the same two Secrets: a self-signed Issuer,
// the CA Certificate, a CA Issuer and the serving Certificate; nothing is generated by Helm.
func TestChartCertManager(t *testing.T) {
	objs := helmtest.Render(t, "ci/cert-manager-values.yaml")
	if got := helmtest.OfKind(objs, "Secret"); len(got) != 0 {
		t.Errorf("rendered %s with cert-manager", names(got))
	}
	checkServesTLS(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release), tlsSecret, true)
	// The workload CA signs with cert-manager's CA: its tls.crt and tls.key, mounted as ca.crt and ca.key.
	checkWorkloadCA(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release), caSecret, true)
	issuers := helmtest.OfKind(objs, "Issuer")
	certs := helmtest.OfKind(objs, "Certificate")
	if len(issuers) != 2 || len(certs) != 2 {
		t.Fatalf("rendered %s, want two Issuers and two Certificates", names(append(issuers, certs...)))
	}
	for _, o := range append(issuers, certs...) {
		if o.GetAPIVersion() != "cert-manager.io/v1" || o.GetNamespace() != helmtest.Namespace {
			t.Errorf("%s %s/%s is %s", o.GetKind(), o.GetNamespace(), o.GetName(), o.GetAPIVersion())
		}
	}
	spec := func(kind, name string) map[string]any {
		t.Helper()
		o := helmtest.Find(objs, kind, name)
		if o == nil {
			t.Fatalf("no %s %s: %s", kind, name, names(objs))
		}
		s, _, _ := unstructured.NestedMap(o.Object, "spec")
		return s
	}
	issuerRef := func(s map[string]any) string {
		kind, _, _ := unstructured.NestedString(s, "issuerRef", "kind")
		name, _, _ := unstructured.NestedString(s, "issuerRef", "name")
		return kind + "/" + name
	}
	selfSigned := helmtest.Release + "-selfsigned"
	if s := spec("Issuer", selfSigned); s["selfSigned"] == nil {
		t.Errorf("Issuer %s %v, want selfSigned", selfSigned, s)
	}
	if s := spec("Certificate", caSecret); s["isCA"] != true || s["secretName"] != caSecret || s["duration"] != "87600h" ||
		issuerRef(s) != "Issuer/"+selfSigned {
		t.Errorf("CA Certificate %v, want a CA of 10 years in %s issued by %s", s, caSecret, selfSigned)
	}
	if s := spec("Issuer", caSecret); !maps.Equal(s["ca"].(map[string]any), map[string]any{"secretName": caSecret}) {
		t.Errorf("CA Issuer %v, want the CA of %s", s, caSecret)
	}
	s := spec("Certificate", tlsSecret)
	dnsNames, _, _ := unstructured.NestedStringSlice(s, "dnsNames")
	usages, _, _ := unstructured.NestedStringSlice(s, "usages")
	if s["isCA"] == true || s["secretName"] != tlsSecret || s["duration"] != "8760h" || s["renewBefore"] != "720h" ||
		issuerRef(s) != "Issuer/"+caSecret || !slices.Equal(dnsNames, serviceDNSNames(helmtest.Release)) || !slices.Contains(usages, "server auth") {
		t.Errorf("serving Certificate %v, want 1 year in %s, renewed 30 days before, by the CA Issuer, for %v", s, tlsSecret, serviceDNSNames(helmtest.Release))
	}

	if slices.Contains(usages, "client auth") {
		t.Errorf("serving Certificate usages %v: client auth without sharePolling", usages)
	}
	// With shared polling the replicas present it to each other: client auth too.
	shared := helmtest.Find(render(t, "--values", "ci/cert-manager-values.yaml", "--set", "sharePolling.enabled=true"), "Certificate", tlsSecret)
	if u, _, _ := unstructured.NestedStringSlice(shared.Object, "spec", "usages"); !slices.Contains(u, "client auth") || !slices.Contains(u, "server auth") {
		t.Errorf("serving Certificate usages %v with sharePolling, want server and client auth", u)
	}

	for _, bad := range [][]string{{"--set", "certManager.enabled=true", "--set", "tls.enabled=false"},
		{"--set", "certManager.enabled=true", "--set", "tls.secretName=mine"}} {
		if objs, err := helmtest.Template(t, bad...); err == nil || !strings.Contains(err.Error(), "certManager.enabled") {
			t.Errorf("%q: rendered %s, err %v; want an error naming certManager.enabled", bad, names(objs), err)
		}
	}
}

// TestChartPlaintext: only an explicit tls.enabled=false serves plaintext; then nothing TLS is rendered. (NOTES.txt
// and its warning are checked by TestChartInstallUpgrade: helm template does not render notes.)
func TestChartPlaintext(t *testing.T) {
	objs := render(t, "--set", "tls.enabled=false")
	if got := helmtest.OfKind(objs, "Secret", "Certificate", "Issuer"); len(got) != 0 {
		t.Errorf("rendered %s without TLS", names(got))
	}
	dep := typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	c := container(t, dep)
	if hasArg(c.Args, "--tls-") || hasArg(c.Args, "--admin-operators") {
		t.Errorf("TLS flags without TLS: %q", c.Args)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s probe %+v, want HTTP", name, p)
		}
	}
	if len(c.VolumeMounts) != 0 || len(dep.Spec.Template.Spec.Volumes) != 0 {
		t.Errorf("volumes %+v mounts %+v without TLS", dep.Spec.Template.Spec.Volumes, c.VolumeMounts)
	}
	for _, p := range typed[corev1.Service](t, objs, "Service", helmtest.Release).Spec.Ports {
		if p.Name != "xds-grpc" && (p.AppProtocol == nil || *p.AppProtocol != "http") {
			t.Errorf("port %+v, want appProtocol http", p)
		}
	}
	// No workload CA either: it needs TLS.
	checkNoWorkloadCA(t, objs)
	// The NetworkPolicy stays, for xDS alone.
	if xds := networkPolicy(t, objs).Spec.Ingress[0]; !slices.Equal(ingressPorts(xds), []string{"TCP/18000"}) {
		t.Errorf("xDS rule %+v without TLS, want the xDS port alone", xds)
	}
}

// TestChartWorkloadCA: the workload CA's settings reach serve's flags, the container, the Service and the
// NetworkPolicy; workloadCA.enabled=false leaves TLS as it is and takes the rest away.
func TestChartWorkloadCA(t *testing.T) {
	objs := render(t, "--set", "workloadCA.port=8443", "--set", "workloadCA.trustDomain=prod.example.org", "--set", "workloadCA.ttl=6h")
	dep := typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	checkWorkloadCA(t, dep, caSecret, false)
	wantArgs(t, container(t, dep).Args, "--ca-address=:8443", "--ca-trust-domain=prod.example.org", "--ca-workload-ttl=6h")
	var svcPort *corev1.ServicePort
	for _, p := range typed[corev1.Service](t, objs, "Service", helmtest.Release).Spec.Ports {
		if p.Name == "ca" {
			svcPort = &p
		}
	}
	if svcPort == nil || svcPort.Port != 8443 || svcPort.TargetPort.String() != "ca" || svcPort.AppProtocol == nil || *svcPort.AppProtocol != "https" {
		t.Errorf("Service port ca %+v, want 8443 to the container's ca, appProtocol https", svcPort)
	}
	if xds := networkPolicy(t, objs).Spec.Ingress[0]; !slices.Equal(ingressPorts(xds), []string{"TCP/18000", "TCP/8443"}) {
		t.Errorf("xDS rule %+v, want the workload CA's port with xDS's", xds)
	}

	objs = render(t, "--set", "workloadCA.enabled=false")
	checkServesTLS(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release), tlsSecret, true)
	checkNoWorkloadCA(t, objs)
	if xds := networkPolicy(t, objs).Spec.Ingress[0]; !slices.Equal(ingressPorts(xds), []string{"TCP/18000"}) {
		t.Errorf("xDS rule %+v with workloadCA.enabled=false, want the xDS port alone", xds)
	}
	// The generated CA stays: operators' certificates come from it.
	typed[corev1.Secret](t, objs, "Secret", caSecret)
}

func networkPolicy(t *testing.T, objs []*unstructured.Unstructured) *networkingv1.NetworkPolicy {
	t.Helper()
	return typed[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", helmtest.Release)
}

// ingressPorts returns the ports of a rule, as "TCP/18000".
func ingressPorts(r networkingv1.NetworkPolicyIngressRule) []string {
	var out []string
	for _, p := range r.Ports {
		proto := "TCP"
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		port := "all"
		if p.Port != nil {
			port = p.Port.String()
		}
		out = append(out, proto+"/"+port)
	}
	return out
}

// adminRule returns the rule of the admin and metrics ports, or nil.
func adminRule(t *testing.T, np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicyIngressRule {
	t.Helper()
	for i, r := range np.Spec.Ingress {
		if slices.Equal(ingressPorts(r), []string{"TCP/19000", "TCP/19001"}) {
			return &np.Spec.Ingress[i]
		}
	}
	return nil
}

// adminNamespaces returns the namespaces the admin and metrics ports are open to by name.
func adminNamespaces(t *testing.T, np *networkingv1.NetworkPolicy) []string {
	t.Helper()
	r := adminRule(t, np)
	if r == nil {
		return nil
	}
	var out []string
	for _, peer := range r.From {
		if peer.NamespaceSelector == nil || peer.PodSelector != nil {
			continue
		}
		for _, e := range peer.NamespaceSelector.MatchExpressions {
			if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpIn {
				out = append(out, e.Values...)
			}
		}
	}
	return out
}

// TestChartNetworkPolicy: ingress to the control plane's pods only on the xDS port from sidecar pods of any
// namespace (and extraFrom), on the admin and metrics ports only from the named namespaces (and extraFrom);
// egress is not restricted. No rule of any render is open to everyone.
func TestChartNetworkPolicy(t *testing.T) {
	objs := render(t)
	np := networkPolicy(t, objs)
	dep := typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release)
	if !maps.Equal(np.Spec.PodSelector.MatchLabels, dep.Spec.Selector.MatchLabels) || len(np.Spec.PodSelector.MatchExpressions) != 0 {
		t.Errorf("podSelector %+v, want the Deployment's selector %v", np.Spec.PodSelector, dep.Spec.Selector.MatchLabels)
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Egress) != 0 {
		t.Errorf("policyTypes %v egress %+v, want ingress only (egress open)", np.Spec.PolicyTypes, np.Spec.Egress)
	}
	if len(np.Spec.Ingress) != 2 {
		t.Fatalf("ingress %+v, want a rule for xDS and one for admin and metrics", np.Spec.Ingress)
	}
	// The workload CA's port is let in from the same peers as xDS: the sidecars get their certificates there.
	xds := np.Spec.Ingress[0]
	if !slices.Equal(ingressPorts(xds), []string{"TCP/18000", "TCP/18001"}) || len(xds.From) != 1 {
		t.Fatalf("xDS rule %+v, want the xDS and workload CA ports", xds)
	}
	peer := xds.From[0]
	if peer.NamespaceSelector == nil || len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) != 0 ||
		peer.PodSelector == nil || !maps.Equal(peer.PodSelector.MatchLabels, map[string]string{"rocketpilot.io/sidecar": "true"}) || peer.IPBlock != nil {
		t.Errorf("xDS peer %+v, want pods labelled rocketpilot.io/sidecar=true in every namespace", peer)
	}
	if got := adminNamespaces(t, np); !slices.Equal(got, []string{helmtest.Namespace}) || len(adminRule(t, np).From) != 1 {
		t.Errorf("admin and metrics rule %+v, want the release namespace only", adminRule(t, np))
	}

	// extraFrom peers are added to their rule; with no admin peer at all, the admin rule goes (an empty one
	// would admit everyone).
	objs = render(t, "--values", "ci/cert-manager-values.yaml", "--set", "networkPolicy.adminFrom.releaseNamespace=false")
	np = networkPolicy(t, objs)
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 2 || np.Spec.Ingress[0].From[1].PodSelector == nil ||
		np.Spec.Ingress[0].From[1].PodSelector.MatchLabels["app.kubernetes.io/name"] != "envoy" {
		t.Errorf("ingress %+v, want the xDS rule with the sidecars and the Envoys of extraFrom, and no admin rule", np.Spec.Ingress)
	}
	objs = render(t, "--set", "networkPolicy.adminFrom.releaseNamespace=false", "--set", "networkPolicy.adminFrom.namespaces={monitoring,ops}",
		"--set", "networkPolicy.adminFrom.extraFrom[0].ipBlock.cidr=10.0.0.0/8")
	np = networkPolicy(t, objs)
	if r := adminRule(t, np); r == nil || !slices.Equal(adminNamespaces(t, np), []string{"monitoring", "ops"}) || len(r.From) != 2 ||
		r.From[1].IPBlock == nil || r.From[1].IPBlock.CIDR != "10.0.0.0/8" {
		t.Errorf("admin rule %+v, want the namespaces monitoring and ops and the ipBlock", r)
	}
	if got := helmtest.OfKind(render(t, "--set", "networkPolicy.enabled=false"), "NetworkPolicy"); len(got) != 0 {
		t.Errorf("rendered %s with networkPolicy.enabled=false", names(got))
	}

	for _, v := range variants {
		for _, o := range helmtest.OfKind(render(t, v.args...), "NetworkPolicy") {
			np := typed[networkingv1.NetworkPolicy](t, []*unstructured.Unstructured{o}, "NetworkPolicy", o.GetName())
			for _, r := range np.Spec.Ingress {
				if len(r.From) == 0 || len(r.Ports) == 0 {
					t.Errorf("%s: ingress rule %+v admits every source or every port", v.name, r)
				}
				for _, p := range r.From {
					if p.NamespaceSelector == nil && p.PodSelector == nil && p.IPBlock == nil {
						t.Errorf("%s: an empty peer in %+v", v.name, r)
					}
				}
			}
		}
	}
}

func TestChartWatchNamespace(t *testing.T) {
	objs := render(t, "--set", "watchNamespace=team-a")
	// The one cluster-wide grant: the workload CA's TokenReviews (cluster-scoped) and its reading of sidecars' pods
	// (in any namespace), in a ClusterRole of its own, named
	// after the release namespace too (releases of the same name in other namespaces share the cluster's names).
	tokenReview := helmtest.Release + "-" + helmtest.Namespace + "-tokenreview"
	if got := helmtest.OfKind(objs, "ClusterRole", "ClusterRoleBinding"); len(got) != 2 {
		t.Errorf("cluster-wide RBAC with watchNamespace: %s, want the workload CA's ClusterRole and binding", names(got))
	}
	cr := typed[rbacv1.ClusterRole](t, objs, "ClusterRole", tokenReview)
	if len(cr.Rules) != 2 || !reflect.DeepEqual(cr.Rules[0], rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"},
		Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}) || !reflect.DeepEqual(cr.Rules[1],
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}) {
		t.Errorf("ClusterRole %s rules %+v, want tokenreviews create and pods get only", tokenReview, cr.Rules)
	}
	crb := typed[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", tokenReview)
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != tokenReview {
		t.Errorf("ClusterRoleBinding %s -> %+v", tokenReview, crb.RoleRef)
	}
	if got := helmtest.OfKind(render(t, "--set", "watchNamespace=team-a", "--set", "workloadCA.enabled=false"), "ClusterRole", "ClusterRoleBinding"); len(got) != 0 {
		t.Errorf("cluster-wide RBAC with watchNamespace and no workload CA: %s", names(got))
	}
	role := typed[rbacv1.Role](t, objs, "Role", helmtest.Release)
	binding := typed[rbacv1.RoleBinding](t, objs, "RoleBinding", helmtest.Release)
	if role.Namespace != "team-a" || binding.Namespace != "team-a" || binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != role.Name {
		t.Errorf("role %s/%s binding %s/%s -> %+v", role.Namespace, role.Name, binding.Namespace, binding.Name, binding.RoleRef)
	}
	if lease := typed[rbacv1.Role](t, objs, "Role", helmtest.Release+"-leader-election"); lease.Namespace != helmtest.Namespace {
		t.Errorf("the leader election Role is in %s, want the release namespace", lease.Namespace)
	}
	c := container(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release))
	wantArgs(t, c.Args, "--watch-namespace=team-a")
}

// TestChartTransientObjectLifeSpan: transientObjectLifeSpan becomes serve's --transient-object-life-span, which
// every sidecar's RocketMQ filter config carries (cmd/rocketpilot's
// TestPopAckDirectiveLivesAsLongAsTheConfiguredLifeSpan); unset, serve's default applies (TestChartDefaults).
func TestChartTransientObjectLifeSpan(t *testing.T) {
	objs := render(t, "--set", "transientObjectLifeSpan=2m30s")
	c := container(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release))
	wantArgs(t, c.Args, "--transient-object-life-span=2m30s")
}

func TestChartLeaderElectionOff(t *testing.T) {
	objs := render(t, "--set", "leaderElection.enabled=false", "--set", "replicaCount=1")
	c := container(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release))
	wantArgs(t, c.Args, "--leader-elect=false")
	if hasArg(c.Args, "--leader-election-") || hasArg(c.Args, "--leader-elect=true") {
		t.Errorf("leader election flags while disabled: %q", c.Args)
	}
	if got := helmtest.OfKind(objs, "Role", "RoleBinding", "PodDisruptionBudget"); len(got) != 0 {
		t.Errorf("rendered %s with one replica and no leader election", names(got))
	}
}

// rule is one granted (scope, API group, resource, verb).
type rule struct{ scope, group, resource, verb string }

// TestChartRBAC checks every render grants exactly what the controller needs (what cmd/rocketpilot's
// TestServeWithChartRBAC shows is enough): no wildcard, nothing on secrets, pods or anything else.
func TestChartRBAC(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := render(t, v.args...)
			crScope := "cluster"
			if slices.Contains(v.args, "watchNamespace=team-a") {
				crScope = "team-a"
			}
			want := map[rule]bool{}
			grant := func(scope, group string, resources, verbs []string) {
				for _, r := range resources {
					for _, verb := range verbs {
						want[rule{scope, group, r, verb}] = true
					}
				}
			}
			kinds := []string{"nameserversources", "topicroutes", "topicbindings"}
			grant(crScope, "rocketpilot.io", kinds, []string{"list", "watch"})
			grant(crScope, "rocketpilot.io", []string{"nameserversources/status", "topicroutes/status", "topicbindings/status"}, []string{"update"})
			grant(crScope, "rocketmq.apache.org", []string{"nameservices"}, []string{"get"})
			grant(crScope, "events.k8s.io", []string{"events"}, []string{"create", "patch"})
			if workloadCAOn(v.args) {
				// TokenReview is cluster-scoped, whatever watchNamespace says.
				grant("cluster", "authentication.k8s.io", []string{"tokenreviews"}, []string{"create"})
				// The labels of the pod a token is bound to, which its certificate carries: pods of any namespace.
				grant("cluster", "", []string{"pods"}, []string{"get"})
			}
			if !slices.Contains(v.args, "leaderElection.enabled=false") {
				grant(helmtest.Namespace, "coordination.k8s.io", []string{"leases"}, []string{"get", "create", "update"})
				grant(helmtest.Namespace, "", []string{"events"}, []string{"create", "patch"})
			}

			got := map[rule]bool{}
			roles := map[string]bool{} // kind/namespace/name
			for _, o := range helmtest.OfKind(objs, "ClusterRole", "Role") {
				var rules []rbacv1.PolicyRule
				if o.GetKind() == "ClusterRole" {
					cr := typed[rbacv1.ClusterRole](t, objs, "ClusterRole", o.GetName())
					if cr.AggregationRule != nil {
						t.Errorf("ClusterRole %s aggregates", cr.Name)
					}
					rules = cr.Rules
				} else {
					rules = typed[rbacv1.Role](t, []*unstructured.Unstructured{o}, "Role", o.GetName()).Rules
				}
				scope := o.GetNamespace()
				if scope == "" {
					scope = "cluster"
				}
				roles[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
				for _, r := range rules {
					if len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
						t.Errorf("%s %s: rule %+v", o.GetKind(), o.GetName(), r)
					}
					for _, g := range r.APIGroups {
						for _, res := range r.Resources {
							for _, verb := range r.Verbs {
								// Pods: get only, for the workload CA (the labels of a token's pod); never list or watch.
								podsForCA := res == "pods" && verb == "get" && workloadCAOn(v.args)
								if g == "*" || res == "*" || verb == "*" || strings.HasPrefix(res, "secrets") || strings.HasPrefix(res, "pods") && !podsForCA {
									t.Errorf("%s %s grants %s on %q/%s", o.GetKind(), o.GetName(), verb, g, res)
								}
								got[rule{scope, g, res, verb}] = true
							}
						}
					}
				}
			}
			for r := range got {
				if !want[r] {
					t.Errorf("grants %+v, which the controller does not need", r)
				}
			}
			for r := range want {
				if !got[r] {
					t.Errorf("does not grant %+v, which the controller needs", r)
				}
			}
			// Every binding binds a rendered role to the chart's ServiceAccount only.
			for _, o := range helmtest.OfKind(objs, "ClusterRoleBinding", "RoleBinding") {
				var ref rbacv1.RoleRef
				var subjects []rbacv1.Subject
				if o.GetKind() == "ClusterRoleBinding" {
					b := typed[rbacv1.ClusterRoleBinding](t, objs, o.GetKind(), o.GetName())
					ref, subjects = b.RoleRef, b.Subjects
				} else {
					b := typed[rbacv1.RoleBinding](t, []*unstructured.Unstructured{o}, o.GetKind(), o.GetName())
					ref, subjects = b.RoleRef, b.Subjects
				}
				if !roles[ref.Kind+"/"+o.GetNamespace()+"/"+ref.Name] {
					t.Errorf("%s %s/%s binds %+v, not a role of the chart in its namespace", o.GetKind(), o.GetNamespace(), o.GetName(), ref)
				}
				if len(subjects) != 1 || subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: helmtest.Release, Namespace: helmtest.Namespace}) {
					t.Errorf("%s %s subjects %+v", o.GetKind(), o.GetName(), subjects)
				}
			}
		})
	}
}

// TestChartSchemaRejectsInvalidValues renders values files with one bad value each: helm refuses them, naming
// the field.
func TestChartSchemaRejectsInvalidValues(t *testing.T) {
	for _, tc := range []struct{ values, field string }{
		{"logLevel: loud", "logLevel"},
		{"logFormat: xml", "logFormat"},
		{"discovery: sometimes", "discovery"},
		{"replicaCount: 0", "replicaCount"},
		{"replicaCount: two", "replicaCount"},
		{"namesrv: [\"no-port\"]", "namesrv"},
		{"pprof: \"yes\"", "pprof"},
		{"tls:\n  secretName: My_Secret", "secretName"},
		{"tls:\n  clientCA: \"no\"", "clientCA"},
		{"image:\n  pullPolicy: Sometimes", "pullPolicy"},
		{"serviceMonitor:\n  interval: often", "interval"},
		{"shutdown:\n  delaySeconds: -1", "delaySeconds"},
		{"terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds"},
		{"watchNamespace: Team_A", "watchNamespace"},
		{"transientObjectLifeSpan: soon", "transientObjectLifeSpan"},
		{"transientObjectLifeSpan: 30", "transientObjectLifeSpan"},
		{"replicas: 3", "replicas"},
		{"leaderElection:\n  enabled: false", "leaderElection.enabled"},
		{"pprof: true\ntls:\n  enabled: false", "pprof"},
		{"pprof: true\ntls:\n  clientCA: false", "pprof"},
		{"certManager:\n  enabled: \"yes\"", "certManager"},
		{"certManager:\n  issuer: x", "issuer"},
		{"certManager:\n  enabled: true\ntls:\n  enabled: false", "certManager.enabled"},
		{"certManager:\n  enabled: true\ntls:\n  secretName: mine", "certManager.enabled"},
		{"networkPolicy:\n  enable: true", "enable"},
		{"networkPolicy:\n  enabled: 1", "networkPolicy"},
		{"networkPolicy:\n  adminFrom:\n    namespaces: [Monitoring_NS]", "namespaces"},
		{"networkPolicy:\n  adminFrom:\n    namespaces: monitoring", "namespaces"},
		{"networkPolicy:\n  xdsFrom:\n    extraFrom: [{}]", "extraFrom"},
		{"networkPolicy:\n  xdsFrom:\n    extraFrom: [{podSelecter: {}}]", "podSelecter"},
		{"networkPolicy:\n  adminFrom:\n    extraFrom: [{ipBlock: {except: [10.1.0.0/16]}}]", "cidr"},
		{"networkPolicy:\n  xdsFrom:\n    podSelector: {matchLabels: {rocketpilot.io/sidecar: true}}", "matchLabels"},
		{"networkPolicy:\n  xdsFrom:\n    podSelector: {matchExpressions: [{key: a, operator: Is}]}", "operator"},
		{"podDisruptionBudget:\n  minAvailable: 2", "podDisruptionBudget.minAvailable"},
		{"workloadCA:\n  enabled: \"yes\"", "workloadCA"},
		{"workloadCA:\n  port: 0", "port"},
		{"workloadCA:\n  port: 18000", "workloadCA.port"},
		{"workloadCA:\n  port: 19001", "workloadCA.port"},
		{"workloadCA:\n  ttl: a day", "ttl"},
		{"workloadCA:\n  trustDomain: Cluster Local", "trustDomain"},
		{"workloadCA:\n  secretName: My_CA", "secretName"},
		{"workloadCA:\n  issuer: x", "issuer"},
		{"tls:\n  secretName: mine", "workloadCA.secretName"},
		{"workloadCA:\n  secretName: mine", "workloadCA.secretName"},
	} {
		t.Run(strings.ReplaceAll(tc.values, "\n", " "), func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(f, []byte(tc.values+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			objs, err := helmtest.Template(t, "--values", f)
			if err == nil {
				t.Fatalf("helm template accepted %q and rendered %s", tc.values, names(objs))
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("the error does not name %s: %v", tc.field, err)
			}
		})
	}
}

// TestChartCRDs checks the chart's crds/ folder holds exactly the generated manifests (make generate copies them).
func TestChartCRDs(t *testing.T) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Glob(filepath.Join(root, "crds", "manifests", "*.yaml"))
	got, _ := filepath.Glob(filepath.Join(helmtest.ChartDir(t), "crds", "*.yaml"))
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("chart CRDs %v, manifests %v", got, want)
	}
	for _, w := range want {
		a, err := os.ReadFile(w)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(helmtest.ChartDir(t), "crds", filepath.Base(w)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("charts/rocketpilot/crds/%s differs from crds/manifests (run make generate): %v", filepath.Base(w), err)
		}
	}
	for _, crd := range helmtest.CRDs(t) {
		if crd.GetKind() != "CustomResourceDefinition" {
			t.Errorf("crds/ holds a %s", crd.GetKind())
		}
	}
}

// TestChartAppliesToAPIServer applies every manifest of every render, and the chart's CRDs, with a server-side
// apply dry run against a real kube-apiserver: its validation and admission accept them all. The kinds of other
// projects' CRDs (ServiceMonitor, cert-manager's Certificate and Issuer) are checked against stand-ins of those
// CRDs in testdata/crds, which accept any spec: the API server checks their metadata only.
func TestChartAppliesToAPIServer(t *testing.T) {
	env := kubetest.StartT(t, filepath.Join("testdata", "crds"))
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{helmtest.Namespace, "team-a"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(u *unstructured.Unstructured) error {
		return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner("rocketpilot-chart-test"), client.DryRunAll)
	}
	for _, crd := range helmtest.CRDs(t) {
		if err := apply(crd); err != nil {
			t.Errorf("CRD %s: %v", crd.GetName(), err)
		}
	}
	applied := map[string]bool{}
	for _, v := range variants {
		for _, o := range render(t, v.args...) {
			if err := apply(o); err != nil {
				t.Errorf("%s: %s %s/%s: %v", v.name, o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
			applied[o.GetKind()] = true
		}
	}
	for _, k := range []string{"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget",
		"ServiceMonitor", "Secret", "NetworkPolicy", "Certificate", "Issuer"} {
		if !applied[k] {
			t.Errorf("no %s applied", k)
		}
	}
	// A dry run persists nothing...
	var dep appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: helmtest.Namespace, Name: helmtest.Release}, &dep); !apierrors.IsNotFound(err) {
		t.Errorf("after the dry run, get the Deployment: %v", err)
	}
	// ...and it validates: the same Deployment with a port name the API server rejects fails.
	bad := helmtest.Find(render(t), "Deployment", helmtest.Release).DeepCopy()
	containers, _, _ := unstructured.NestedSlice(bad.Object, "spec", "template", "spec", "containers")
	ports := containers[0].(map[string]any)["ports"].([]any)
	ports[0].(map[string]any)["name"] = "not_a_valid_port_name"
	if err := unstructured.SetNestedSlice(bad.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	if err := apply(bad); !apierrors.IsInvalid(err) {
		t.Errorf("a Deployment with an invalid port name: %v, want Invalid", err)
	}
}

// helmAt runs helm in the chart's directory against the API server of kubeconfig, with its homes in a temporary
// directory, and returns its output (stdout and stderr).
func helmAt(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmtest.Helm(t), args...)
	cmd.Dir = helmtest.ChartDir(t)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestChartInstallUpgrade installs the chart for real into an API server (envtest: nothing runs the pods) and
// upgrades it: the generated CA and serving certificate are kept across upgrades (Helm's lookup), the serving
// certificate is re-issued from the same CA once it expires within 30 days, and NOTES warn of plaintext when
// tls.enabled=false.
func TestChartInstallUpgrade(t *testing.T) {
	env := kubetest.StartT(t)
	kubeconfig := kubetest.Kubeconfig(t, env)
	c := kubetest.Client(t, env)
	ctx := context.Background()
	secrets := func() (ca, srv *corev1.Secret) {
		t.Helper()
		ca, srv = new(corev1.Secret), new(corev1.Secret)
		for name, s := range map[string]*corev1.Secret{caSecret: ca, tlsSecret: srv} {
			if err := c.Get(ctx, client.ObjectKey{Namespace: helmtest.Namespace, Name: name}, s); err != nil {
				t.Fatalf("get Secret %s: %v", name, err)
			}
		}
		return ca, srv
	}
	upgrade := func(args ...string) string {
		t.Helper()
		return helmAt(t, kubeconfig, append([]string{"upgrade", helmtest.Release, ".", "--namespace", helmtest.Namespace}, args...)...)
	}

	notes := helmAt(t, kubeconfig, "install", helmtest.Release, ".", "--namespace", helmtest.Namespace, "--create-namespace")
	if strings.Contains(notes, "WARNING") || strings.Contains(notes, "PLAINTEXT") ||
		!strings.Contains(notes, "get secret "+tlsSecret) || !strings.Contains(notes, "rocketctl --server https://") {
		t.Errorf("install NOTES, want TLS and no warning:\n%s", notes)
	}
	if !strings.Contains(notes, "https://"+helmtest.Release+"."+helmtest.Namespace+".svc:18001") || !strings.Contains(notes, "rocketctl kube-inject") {
		t.Errorf("install NOTES, want the workload CA's address and kube-inject:\n%s", notes)
	}
	ca0, srv0 := secrets()
	checkGeneratedSecrets(t, ca0, srv0, helmtest.Release)
	var dep appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: helmtest.Namespace, Name: helmtest.Release}, &dep); err != nil {
		t.Fatal(err)
	}
	checkServesTLS(t, &dep, tlsSecret, true)

	// An upgrade keeps both.
	upgrade()
	ca1, srv1 := secrets()
	if !maps.EqualFunc(ca1.Data, ca0.Data, bytes.Equal) || !maps.EqualFunc(srv1.Data, srv0.Data, bytes.Equal) ||
		srv1.Annotations[notAfterKey] != srv0.Annotations[notAfterKey] {
		t.Fatalf("an upgrade changed the certificates")
	}

	// A serving certificate within 30 days of its expiry, or of an unknown one, is re-issued from the same CA.
	for _, notAfter := range []string{time.Now().Add(29 * 24 * time.Hour).UTC().Format(time.RFC3339), "soon"} {
		srv1.Annotations[notAfterKey] = notAfter
		if err := c.Update(ctx, srv1); err != nil {
			t.Fatal(err)
		}
		upgrade()
		ca2, srv2 := secrets()
		if !maps.EqualFunc(ca2.Data, ca0.Data, bytes.Equal) {
			t.Errorf("not after %s: the upgrade replaced the CA", notAfter)
		}
		if bytes.Equal(srv2.Data["tls.crt"], srv1.Data["tls.crt"]) || bytes.Equal(srv2.Data["tls.key"], srv1.Data["tls.key"]) {
			t.Errorf("not after %s: the upgrade kept the serving certificate", notAfter)
		}
		checkGeneratedSecrets(t, ca2, srv2, helmtest.Release)
		srv1 = srv2
	}
	// ...and one with more than 30 days left is kept.
	srv1.Annotations[notAfterKey] = time.Now().Add(31 * 24 * time.Hour).UTC().Format(time.RFC3339)
	if err := c.Update(ctx, srv1); err != nil {
		t.Fatal(err)
	}
	upgrade()
	if _, srv2 := secrets(); !maps.EqualFunc(srv2.Data, srv1.Data, bytes.Equal) {
		t.Errorf("the upgrade re-issued a serving certificate with 31 days left")
	}

	// Plaintext only when asked, with a warning; the generated Secrets go.
	notes = upgrade("--set", "tls.enabled=false")
	if !strings.Contains(notes, "WARNING: tls.enabled=false") || !strings.Contains(notes, "PLAINTEXT") || !strings.Contains(notes, "rocketctl --server http://") ||
		strings.Contains(notes, "workload CA") {
		t.Errorf("NOTES with tls.enabled=false, want a warning of plaintext and no workload CA:\n%s", notes)
	}
	for _, name := range []string{caSecret, tlsSecret} {
		if err := c.Get(ctx, client.ObjectKey{Namespace: helmtest.Namespace, Name: name}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
			t.Errorf("Secret %s after tls.enabled=false: %v, want NotFound", name, err)
		}
	}
}

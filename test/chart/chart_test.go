// Package chart tests the Helm chart charts/rocketpilot: helm lint and helm template with each values file of
// ci/, the properties of what it renders, its schema, and that a real API server (envtest) accepts every manifest.
package chart

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
)

const tlsDir = "/etc/rocketpilot/tls"

// variants are the renders the tests check: the default values, each values file of ci/, and --set variations.
var variants = []struct {
	name string
	args []string
}{
	{"default", nil},
	{"ha", []string{"--values", "ci/ha-values.yaml"}},
	{"tls", []string{"--values", "ci/tls-values.yaml"}},
	{"tls-no-client-ca", []string{"--values", "ci/tls-values.yaml", "--set", "tls.clientCA=false", "--set", "pprof=false"}},
	{"watch-namespace", []string{"--set", "watchNamespace=team-a"}},
	{"no-leader-election", []string{"--set", "leaderElection.enabled=false", "--set", "replicaCount=1"}},
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
	for _, values := range [][]string{nil, {"ci/ha-values.yaml"}, {"ci/tls-values.yaml"}} {
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
	if got, want := kinds(objs), []string{"ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget",
		"Role", "RoleBinding", "Service", "ServiceAccount"}; !slices.Equal(got, want) {
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
	for _, absent := range []string{"--tls-", "--pprof", "--namesrv", "--watch-namespace", "--leader-elect=false",
		"--transient-object-life-span"} {
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
			p.probe.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s probe %+v, want GET %s on the admin port over HTTP", name, p.probe, p.path)
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
	if ports["admin"].Port != 19000 || ports["metrics"].Port != 19001 || len(ports) != 3 {
		t.Errorf("service ports %+v", svc.Spec.Ports)
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
		"--leader-elect=true")
	if hasArg(c.Args, "--tls-") {
		t.Errorf("TLS flags without TLS: %q", c.Args)
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
	endpoint := serviceMonitorEndpoint(t, sm)
	if endpoint["port"] != "metrics" || endpoint["path"] != "/metrics" || endpoint["scheme"] != "http" || endpoint["tlsConfig"] != nil {
		t.Errorf("ServiceMonitor endpoint %v", endpoint)
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
	wantArgs(t, c.Args, "--tls-cert="+tlsDir+"/tls.crt", "--tls-key="+tlsDir+"/tls.key", "--tls-client-ca="+tlsDir+"/ca.crt", "--pprof", "--admin-operators=platform-oncall")
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s probe %+v, want HTTPS (the admin port serves TLS)", name, p)
		}
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != tlsDir || !c.VolumeMounts[0].ReadOnly {
		t.Errorf("volume mounts %+v", c.VolumeMounts)
	}
	vols := dep.Spec.Template.Spec.Volumes
	if len(vols) != 1 || vols[0].Name != c.VolumeMounts[0].Name || vols[0].Secret == nil || vols[0].Secret.SecretName != "rocketpilot-tls" ||
		vols[0].Secret.DefaultMode == nil || *vols[0].Secret.DefaultMode != 0o440 {
		t.Errorf("volumes %+v", vols)
	}
	sm := helmtest.Find(objs, "ServiceMonitor", helmtest.Release)
	if sm == nil {
		t.Fatalf("no ServiceMonitor: %s", names(objs))
	}
	endpoint := serviceMonitorEndpoint(t, sm)
	serverName, _, _ := unstructured.NestedString(endpoint, "tlsConfig", "serverName")
	caSecret, _, _ := unstructured.NestedString(endpoint, "tlsConfig", "ca", "secret", "name")
	if endpoint["scheme"] != "https" || serverName != helmtest.Release+"."+helmtest.Namespace+".svc" || caSecret != "rocketpilot-tls" {
		t.Errorf("ServiceMonitor endpoint %v, want https with the Service's name and the secret's CA", endpoint)
	}

	// Without a client CA the server still serves TLS, and asks for no client certificate.
	objs = render(t, "--values", "ci/tls-values.yaml", "--set", "tls.clientCA=false", "--set", "pprof=false")
	c = container(t, typed[appsv1.Deployment](t, objs, "Deployment", helmtest.Release))
	wantArgs(t, c.Args, "--tls-cert="+tlsDir+"/tls.crt", "--tls-key="+tlsDir+"/tls.key")
	if hasArg(c.Args, "--tls-client-ca") {
		t.Errorf("--tls-client-ca without tls.clientCA: %q", c.Args)
	}
}

func TestChartWatchNamespace(t *testing.T) {
	objs := render(t, "--set", "watchNamespace=team-a")
	if got := helmtest.OfKind(objs, "ClusterRole", "ClusterRoleBinding"); len(got) != 0 {
		t.Errorf("cluster-wide RBAC with watchNamespace: %s", names(got))
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
								if g == "*" || res == "*" || verb == "*" || strings.HasPrefix(res, "secrets") || strings.HasPrefix(res, "pods") {
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
		{"tls:\n  enabled: true", "secretName"},
		{"image:\n  pullPolicy: Sometimes", "pullPolicy"},
		{"serviceMonitor:\n  interval: often", "interval"},
		{"shutdown:\n  delaySeconds: -1", "delaySeconds"},
		{"terminationGracePeriodSeconds: 15", "terminationGracePeriodSeconds"},
		{"watchNamespace: Team_A", "watchNamespace"},
		{"transientObjectLifeSpan: soon", "transientObjectLifeSpan"},
		{"transientObjectLifeSpan: 30", "transientObjectLifeSpan"},
		{"replicas: 3", "replicas"},
		{"leaderElection:\n  enabled: false", "leaderElection.enabled"},
		{"pprof: true", "pprof"},
		{"pprof: true\ntls:\n  enabled: true\n  secretName: s", "pprof"},
		{"podDisruptionBudget:\n  minAvailable: 2", "podDisruptionBudget.minAvailable"},
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
// apply dry run against a real kube-apiserver: its validation and admission accept them all.
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
	for _, k := range []string{"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget", "ServiceMonitor"} {
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

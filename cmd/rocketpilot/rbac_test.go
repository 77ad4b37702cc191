package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/internal/helmtest"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/workloadca"
)

// apiRecorder is a reverse proxy in front of the API server that records every request and each one the API
// server denies (403). The controller under test talks to the API server only through it, so a forbidden request
// shows here even when nothing logs it.
type apiRecorder struct {
	mu       sync.Mutex
	requests map[string]int // "METHOD path" (object names elided) → count
	denied   []string
}

func (r *apiRecorder) RoundTrip(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	key := req.Method + " " + req.URL.Path
	if q := req.URL.Query(); q.Get("watch") == "true" {
		key += "?watch"
	}
	r.mu.Lock()
	r.requests[key]++
	if resp.StatusCode == http.StatusForbidden {
		r.denied = append(r.denied, fmt.Sprintf("%s %s as %s", req.Method, req.URL.RequestURI(), req.Header.Get("Impersonate-User")))
	}
	r.mu.Unlock()
	return resp, nil
}

// snapshot returns the distinct requests so far, sorted, and the denied ones.
func (r *apiRecorder) snapshot() (requests, denied []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.requests {
		requests = append(requests, k)
	}
	slices.Sort(requests)
	return requests, slices.Clone(r.denied)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// startAPIProxy serves a plain HTTP proxy on loopback that forwards to the API server of cfg with cfg's (admin)
// credentials, passing the client's impersonation headers through: the API server authorizes each request as the
// impersonated user.
func startAPIProxy(t *testing.T, cfg *rest.Config) (*httptest.Server, *apiRecorder) {
	t.Helper()
	target, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &apiRecorder{requests: map[string]int{}}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     roundTripFunc(func(r *http.Request) (*http.Response, error) { return rec.RoundTrip(upstream, r) }),
		FlushInterval: -1, // watches stream
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(func() {
		srv.CloseClientConnections() // watches left open would hold Close until the API server ends them
		srv.Close()
	})
	return srv, rec
}

// impersonatingKubeconfig writes a kubeconfig whose user impersonates user and groups (kubeconfig's as and
// as-groups) on server, and returns its path.
func impersonatingKubeconfig(t *testing.T, server, user string, groups []string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["chart-serviceaccount"] = &clientcmdapi.AuthInfo{Impersonate: user, ImpersonateGroups: groups}
	cfg.Contexts["chart-serviceaccount"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "chart-serviceaccount"}
	cfg.CurrentContext = "chart-serviceaccount"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "as: "+user) || !strings.Contains(string(b), "as-groups:") {
		t.Fatalf("the kubeconfig does not impersonate:\n%s", b)
	}
	return path
}

// chartRun is the chart's identity on a test API server: the namespaces of a test, the rendered chart, its
// ServiceAccount and RBAC applied for real, and a kubeconfig that impersonates the ServiceAccount through a
// recording proxy.
type chartRun struct {
	objs       []*unstructured.Unstructured
	args       []string       // the container's arguments
	applied    map[string]int // RBAC objects applied, by kind
	user       string
	kubeconfig string
	rec        *apiRecorder
}

// asChart creates namespaces, renders the chart with valuesFiles and applies its identity and RBAC.
func asChart(t *testing.T, env *envtest.Environment, admin client.Client, namespaces []string, valuesFiles ...string) *chartRun {
	t.Helper()
	ctx := context.Background()
	for _, ns := range namespaces {
		if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	r := &chartRun{objs: helmtest.Render(t, valuesFiles...), applied: map[string]int{}}
	dep := helmtest.Find(r.objs, "Deployment", helmtest.Release)
	if dep == nil {
		t.Fatal("the chart renders no Deployment")
	}
	saName, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "serviceAccountName")
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	r.args, _, _ = unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	for _, o := range helmtest.OfKind(r.objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding") {
		if err := admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("helm")); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		r.applied[o.GetKind()]++
	}
	var sa corev1.ServiceAccount
	if err := admin.Get(ctx, client.ObjectKey{Namespace: helmtest.Namespace, Name: saName}, &sa); err != nil {
		t.Fatalf("the chart's ServiceAccount %q: %v", saName, err)
	}
	r.user = "system:serviceaccount:" + helmtest.Namespace + ":" + saName
	proxy, rec := startAPIProxy(t, env.Config)
	r.rec = rec
	r.kubeconfig = impersonatingKubeconfig(t, proxy.URL, r.user,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + helmtest.Namespace, "system:authenticated"})
	return r
}

// serveArgs are the arguments to run serve as the chart would, through the impersonating kubeconfig: the chart's
// arguments that start with one of prefixes, and short lease timings.
func (r *chartRun) serveArgs(prefixes ...string) []string {
	args := []string{"--kubernetes", "--kubeconfig", r.kubeconfig, "--leader-election-lease-duration", "2s",
		"--leader-election-renew-deadline", "1s", "--leader-election-retry-period", "200ms"}
	for _, a := range r.args {
		if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(a, p) }) {
			args = append(args, a)
		}
	}
	return args
}

// The directories the chart mounts its Secrets at: the serving certificate (tls.crt, tls.key, ca.crt) and the
// workload CA (ca.crt, ca.key).
const chartTLSDir, chartCADir = "/etc/rocketpilot/tls/", "/etc/rocketpilot/ca/"

// serveArgsAsMounted is serveArgs with the files the chart mounts written for real: a test CA stands in for the
// chart's (the serving certificate's ca.crt and the workload CA's are the same CA, as the chart generates them),
// the chart's paths point at them, and the workload CA listens on a loopback port the system picks. It returns the
// files too, for clients of the admin API and the workload CA.
func (r *chartRun) serveArgsAsMounted(t *testing.T, prefixes ...string) ([]string, *tlsSetup) {
	t.Helper()
	s := newTLSSetup(t)
	certtest.Write(t, s.dir, "ca.key", s.ca.KeyPEM(t))
	args := r.serveArgs(prefixes...)
	for i, a := range args {
		if strings.HasPrefix(a, "--ca-address=") {
			args[i] = "--ca-address=127.0.0.1:0"
			continue
		}
		a = strings.ReplaceAll(a, chartTLSDir, s.dir+string(filepath.Separator))
		a = strings.ReplaceAll(a, chartCADir, s.dir+string(filepath.Separator))
		if strings.Contains(a, "/etc/rocketpilot/") {
			t.Fatalf("the chart's argument %q names a file this test does not write", r.args[i])
		}
		args[i] = a
	}
	return args, s
}

// checkWorkloadCA asks the workload CA of p, as a sidecar would, for certificates: with a made-up token it answers
// 401 and logs that the API server did not authenticate the token (a TokenReview the chart's RBAC allowed: without
// it the reason is forbidden), and with a real projected token of the service account namespace/name (audience
// rocketpilot) it issues a certificate naming it.
func checkWorkloadCA(t *testing.T, p *inProcess, s *tlsSetup, env *envtest.Environment, rec *apiRecorder, namespace, name string) {
	t.Helper()
	ctx := context.Background()
	base := "https://" + p.addr(t, "serving the workload CA", time.Second)
	caTLS, err := tlsreload.ClientConfig(s.caFile, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: caTLS}}
	req, err := http.NewRequest(http.MethodPost, base+workloadca.Path, strings.NewReader(`{"csr": ""}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer made-up-token")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "token not authenticated") {
		t.Fatalf("a made-up token: %s %s, want 401: token not authenticated", resp.Status, body)
	}
	refusal := regexp.MustCompile(`"msg":"workload certificate refused".*"reason":"([^"]*)"`).FindStringSubmatch(
		p.waitLog(t, "workload certificate refused", 5*time.Second))
	if refusal == nil || strings.Contains(strings.ToLower(refusal[1]), "forbidden") || !strings.Contains(refusal[1], "token not authenticated") {
		t.Fatalf("the workload CA refused a made-up token for %q, want: token not authenticated (the TokenReview allowed)", refusal)
	}

	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A token bound to a pod, as the kubelet projects it: the CA reads the pod's labels (get pods) for the certificate.
	pod, err := cs.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{ServiceAccountName: name, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := kubetest.Token(t, cs, namespace, name, workloadca.Audience, pod)
	tokenFile := certtest.Write(t, t.TempDir(), "token", []byte(token))[0]
	src := workloadca.NewSource(base, tokenFile, caTLS, nil)
	if err := src.Fetch(ctx); err != nil {
		t.Fatalf("a sidecar of %s/%s: %v\nlogs:\n%s", namespace, name, err, p.logs.String())
	}
	leaf := src.Current().Leaf
	want := "spiffe://cluster.local/ns/" + namespace + "/node/" + pod.Name + "." + namespace
	if labels, _, _ := workloadca.CertifiedLabels(leaf); len(leaf.URIs) != 2 || leaf.URIs[0].String() != want || labels["app"] != name {
		t.Errorf("the certificate names %v, want %s and the pod's labels", leaf.URIs, want)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.ca.PEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate is not a client certificate of the CA: %v", err)
	}
	if requests, _ := rec.snapshot(); !slices.Contains(requests, "POST /apis/authentication.k8s.io/v1/tokenreviews") ||
		!slices.Contains(requests, "GET /api/v1/namespaces/"+namespace+"/pods/"+pod.Name) {
		t.Errorf("no TokenReview, or no read of the token's pod, went through the chart's identity; requests:\n%s", strings.Join(requests, "\n"))
	}
}

// demoNameServer starts an embedded NameServer with the demo topics, closed when the test ends.
func demoNameServer(t *testing.T) *embedded.NameServer { t.Helper(); return embeddedtest.StartDemo(t) }

// TestServeWithChartRBAC runs `serve --kubernetes` as the chart's ServiceAccount, with exactly the RBAC the chart
// renders, against a real API server: it leads, serves the topics, writes status and events, and is denied
// nothing. Then requests outside that RBAC are Forbidden.
func TestServeWithChartRBAC(t *testing.T) {
	env := kubetest.StartT(t, filepath.Join("..", "..", "controllers", "testdata", "crds"))
	admin := kubetest.Client(t, env)
	ctx := context.Background()
	release, apps, elsewhere := helmtest.Namespace, "apps", "elsewhere"

	// The chart's identity and RBAC, applied for real.
	run := asChart(t, env, admin, []string{release, apps, elsewhere})
	objs, chartArgs, user, kubeconfig, rec := run.objs, run.args, run.user, run.kubeconfig, run.rec
	if a := run.applied; a["ServiceAccount"] != 1 || a["ClusterRole"] == 0 || a["ClusterRoleBinding"] == 0 || a["Role"] == 0 || a["RoleBinding"] == 0 {
		t.Fatalf("applied %v", a)
	}

	// What it reconciles: a NameServerSource by address, one through a rocketmq-operator NameService, a
	// TopicRoute, an invalid TopicRoute (a warning event) and a TopicBinding.
	ns := demoNameServer(t)
	nss := &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "demo"},
		Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{ns.Addr()}}}
	operated := &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "operated"},
		Spec: v1alpha1.NameServerSourceSpec{NameServiceRef: &v1alpha1.NameServiceReference{Name: "namesrv"}}}
	nameService := &unstructured.Unstructured{}
	nameService.SetGroupVersionKind(controllers.NameServiceGVK)
	nameService.SetNamespace(apps)
	nameService.SetName("namesrv")
	drain := &v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "drain"}, Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Exact: []string{embedded.DemoTopic}}, Drain: &v1alpha1.Drain{BrokerNames: []string{"broker-b"}}}}
	broken := &v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "broken"}, Spec: v1alpha1.TopicRouteSpec{
		Topics: v1alpha1.TopicSelector{Regex: "demo-(["}}}
	binding := &v1alpha1.TopicBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "orders"}, Spec: v1alpha1.TopicBindingSpec{
		NodeIDs: []string{"orders-*"}, Topics: []string{embedded.DemoTopic}}}
	for _, o := range []client.Object{nss, nameService, operated, drain, broken, binding} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := unstructured.SetNestedStringSlice(nameService.Object, []string{ns.Addr()}, "status", "nameServers"); err != nil {
		t.Fatal(err)
	}
	if err := admin.Status().Update(ctx, nameService); err != nil {
		t.Fatal(err)
	}

	// serve with the chart's leader election flags (the Lease in the release namespace), faster lease timings, and
	// its TLS and workload CA flags, the files they name written.
	args, files := run.serveArgsAsMounted(t, "--leader-elect", "--tls-", "--ca-")
	if !slices.Contains(args, "--leader-election-namespace="+release) {
		t.Fatalf("the chart's args %q do not put the Lease in the release namespace", chartArgs)
	}
	for _, flag := range []string{"--tls-cert=", "--tls-client-ca=", "--ca-address=", "--ca-cert=", "--ca-key="} {
		if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, flag) }) {
			t.Fatalf("the chart's args %q lack %s: TLS and the workload CA are on by default", chartArgs, flag)
		}
	}
	p := serveInProcess(t, args...)
	p.waitLog(t, "serving xDS", 60*time.Second)
	adminAddr := p.addr(t, "serving the admin API", time.Second)
	operator := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: files.clientConfig(t, true)}}
	resp, err := operator.Get("https://" + adminAddr + "/api/v1/topics/" + embedded.DemoTopic)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"topicRoute": "apps/drain"`) {
		t.Fatalf("%s when xDS started serving: %s %s", embedded.DemoTopic, resp.Status, body)
	}

	// The workload CA reviews tokens as the chart's ServiceAccount.
	checkWorkloadCA(t, p, files, env, rec, apps, "orders")

	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	leaseID := "rocketpilot-leader"
	for _, a := range chartArgs {
		if v, ok := strings.CutPrefix(a, "--leader-election-id="); ok {
			leaseID = v
		}
	}
	// Everything the leader writes, within a deadline.
	deadline := time.Now().Add(45 * time.Second)
	var pending []string
	for {
		pending = pending[:0]
		var lease coordinationv1.Lease
		if err := admin.Get(ctx, client.ObjectKey{Namespace: release, Name: leaseID}, &lease); err != nil {
			pending = append(pending, fmt.Sprintf("lease: %v", err))
		} else if h := lease.Spec.HolderIdentity; h == nil || !strings.HasPrefix(*h, hostname+"_") {
			pending = append(pending, fmt.Sprintf("lease holder %v", h))
		}
		for _, s := range []*v1alpha1.NameServerSource{nss, operated} {
			if err := admin.Get(ctx, client.ObjectKeyFromObject(s), s); err != nil {
				t.Fatal(err)
			}
			if !meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ConditionReady) || s.Status.Topics != int32(ns.TopicCount()) ||
				meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ConditionDegraded) || len(s.Status.NameServers) != 1 || !s.Status.NameServers[0].Reachable {
				pending = append(pending, fmt.Sprintf("NameServerSource %s status %+v", s.Name, s.Status))
			}
		}
		for _, tr := range []*v1alpha1.TopicRoute{drain, broken} {
			if err := admin.Get(ctx, client.ObjectKeyFromObject(tr), tr); err != nil {
				t.Fatal(err)
			}
		}
		if !meta.IsStatusConditionTrue(drain.Status.Conditions, v1alpha1.ConditionAccepted) ||
			!meta.IsStatusConditionTrue(drain.Status.Conditions, v1alpha1.ConditionResolved) || drain.Status.MatchedTopics != 1 {
			pending = append(pending, fmt.Sprintf("TopicRoute drain status %+v", drain.Status))
		}
		if c := meta.FindStatusCondition(broken.Status.Conditions, v1alpha1.ConditionAccepted); c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonInvalid {
			pending = append(pending, fmt.Sprintf("TopicRoute broken status %+v", broken.Status))
		}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(binding), binding); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(binding.Status.Conditions, v1alpha1.ConditionAccepted) {
			pending = append(pending, fmt.Sprintf("TopicBinding status %+v", binding.Status))
		}
		// The reconcilers' events (events.k8s.io/v1), and leader election's own (core v1, on the Lease).
		var events eventsv1.EventList
		if err := admin.List(ctx, &events, client.InNamespace(apps)); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(events.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Kind == "TopicRoute" && e.Regarding.Name == "broken" && e.Reason == v1alpha1.ReasonInvalid &&
				e.Type == corev1.EventTypeWarning && e.ReportingController == "rocketpilot"
		}) {
			pending = append(pending, fmt.Sprintf("no Invalid event on TopicRoute broken: %+v", events.Items))
		}
		var coreEvents corev1.EventList
		if err := admin.List(ctx, &coreEvents, client.InNamespace(release)); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(coreEvents.Items, func(e corev1.Event) bool {
			return e.Reason == "LeaderElection" && e.InvolvedObject.Kind == "Lease" && e.InvolvedObject.Name == leaseID
		}) {
			pending = append(pending, fmt.Sprintf("no LeaderElection event in %s: %+v", release, coreEvents.Items))
		}
		if len(pending) == 0 {
			break
		}
		if requests, denied := rec.snapshot(); len(denied) > 0 || time.Now().After(deadline) {
			t.Fatalf("pending:\n%s\nrequests:\n%s\ndenied:\n%s\nlogs:\n%s", strings.Join(pending, "\n"),
				strings.Join(requests, "\n"), strings.Join(denied, "\n"), p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The controller was denied nothing, and logged no denial.
	requests, denied := rec.snapshot()
	t.Logf("the controller's requests:\n%s", strings.Join(requests, "\n"))
	if len(denied) > 0 {
		t.Errorf("the API server denied the controller:\n%s", strings.Join(denied, "\n"))
	}
	if logs := p.logs.String(); strings.Contains(strings.ToLower(logs), "forbidden") {
		t.Errorf("forbidden in the logs:\n%s", logs)
	}
	// And it used every grant: the RBAC is no wider than what the controller does. Event patches are the one
	// exception: client-go patches an event it has recorded before (a series), which this short run never repeats.
	used := map[grant]bool{}
	for _, r := range requests {
		if g, ok := grantOf(r); ok {
			used[g] = true
		}
	}
	for _, o := range helmtest.OfKind(objs, "ClusterRole", "Role") {
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			for _, group := range r["apiGroups"].([]any) {
				for _, resource := range r["resources"].([]any) {
					for _, verb := range r["verbs"].([]any) {
						g := grant{group.(string), resource.(string), verb.(string)}
						if !used[g] && !(g.resource == "events" && g.verb == "patch") {
							t.Errorf("%s %s grants %v, which the controller never used", o.GetKind(), o.GetName(), g)
						}
					}
				}
			}
		}
	}

	// Outside that RBAC, the same identity is Forbidden.
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	as, err := client.New(cfg, client.Options{Scheme: admin.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	other := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: elsewhere, Name: leaseID}}
	if err := admin.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	// Controls: what the RBAC grants works through this client.
	var lease coordinationv1.Lease
	if err := as.Get(ctx, client.ObjectKey{Namespace: release, Name: leaseID}, &lease); err != nil {
		t.Fatalf("get the Lease in the release namespace as %s: %v", user, err)
	}
	var routes v1alpha1.TopicRouteList
	if err := as.List(ctx, &routes); err != nil || len(routes.Items) != 2 {
		t.Fatalf("list TopicRoutes as %s: %d, %v", user, len(routes.Items), err)
	}
	changed := drain.DeepCopy()
	changed.Spec.Drain.BrokerNames = []string{"broker-a"}
	newRoute := &v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "new"},
		Spec: v1alpha1.TopicRouteSpec{Topics: v1alpha1.TopicSelector{Exact: []string{"t"}}}}
	nsStatus := nameService.DeepCopy()
	_ = unstructured.SetNestedStringSlice(nsStatus.Object, []string{"10.0.0.1"}, "status", "nameServers")
	for _, c := range []struct {
		what string
		call func() error
	}{
		{"update a TopicRoute's spec", func() error { return as.Update(ctx, changed) }},
		{"create a TopicRoute", func() error { return as.Create(ctx, newRoute) }},
		{"delete a NameServerSource", func() error { return as.Delete(ctx, nss.DeepCopy()) }},
		{"update a NameService's status", func() error { return as.Status().Update(ctx, nsStatus) }},
		{"list Secrets in the release namespace", func() error { return as.List(ctx, &corev1.SecretList{}, client.InNamespace(release)) }},
		{"list Secrets in every namespace", func() error { return as.List(ctx, &corev1.SecretList{}) }},
		{"get a Lease in another namespace", func() error { return as.Get(ctx, client.ObjectKeyFromObject(other), &coordinationv1.Lease{}) }},
		{"create a Lease in another namespace", func() error {
			return as.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: elsewhere, Name: "mine"}})
		}},
		{"delete the Lease", func() error { return as.Delete(ctx, lease.DeepCopy()) }},
		{"create a Pod", func() error {
			return as.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "p"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}})
		}},
		{"list Pods", func() error { return as.List(ctx, &corev1.PodList{}, client.InNamespace(apps)) }},
		{"read a ConfigMap", func() error {
			return as.Get(ctx, client.ObjectKey{Namespace: release, Name: "kube-root-ca.crt"}, &corev1.ConfigMap{})
		}},
		{"create a core v1 Event outside the release namespace", func() error {
			return as.Create(ctx, &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "e"}})
		}},
		{"delete the events of the release namespace", func() error {
			return as.DeleteAllOf(ctx, &eventsv1.Event{}, client.InNamespace(release))
		}},
	} {
		if err := c.call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s as %s: %v, want Forbidden", c.what, user, err)
		}
	}
	if err := p.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestChartArgsAreServeFlags parses the arguments the chart gives the container, in each of its configurations,
// with serve's own flags: every one exists, takes the value given, and none is left over as an argument.
func TestChartArgsAreServeFlags(t *testing.T) {
	for _, values := range [][]string{
		nil,
		{"--values", "ci/ha-values.yaml"},
		{"--values", "ci/tls-values.yaml"},
		{"--set", "watchNamespace=team-a,leaderElection.enabled=false,replicaCount=1,extraArgs[0]=--poll-interval=10s"},
		{"--set", "workloadCA.port=8443,workloadCA.trustDomain=prod.example.org,workloadCA.ttl=1h30m"},
		{"--set", "workloadCA.enabled=false"},
	} {
		t.Run(strings.Join(append([]string{"defaults"}, values...), " "), func(t *testing.T) {
			objs, err := helmtest.Template(t, values...)
			if err != nil {
				t.Fatal(err)
			}
			dep := helmtest.Find(objs, "Deployment", helmtest.Release)
			if dep == nil {
				t.Fatal("no Deployment")
			}
			containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
			args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
			if len(args) == 0 || args[0] != "serve" {
				t.Fatalf("args %q do not run serve", args)
			}
			cmd := newServeCommand()
			if err := cmd.ParseFlags(args[1:]); err != nil {
				t.Fatalf("serve rejects the chart's args %q: %v", args, err)
			}
			if rest := cmd.Flags().Args(); len(rest) != 0 {
				t.Fatalf("serve takes no arguments; the chart leaves %q", rest)
			}
			for _, a := range args[1:] {
				name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
				f := cmd.Flags().Lookup(name)
				if f == nil {
					t.Fatalf("no flag --%s", name)
				}
				if !ok {
					value = "true" // a bool flag given alone
				}
				got := f.Value.String()
				if sv, ok := f.Value.(pflag.SliceValue); ok {
					got = strings.Join(sv.GetSlice(), ",") // list flags print as [a,b]
				}
				if d, err := time.ParseDuration(value); err == nil && f.Value.Type() == "duration" && got == d.String() {
					got = value // 24h prints as 24h0m0s
				}
				if got != value {
					t.Errorf("--%s is %q after parsing %q", name, got, a)
				}
			}
		})
	}
}

// grant is one (API group, resource, verb) of an RBAC rule.
type grant struct{ group, resource, verb string }

// grantOf turns a recorded request ("METHOD /apis/GROUP/VERSION/[namespaces/NS/]RESOURCE[/NAME[/SUB]][?watch]")
// into the grant it needs; ok is false for discovery and other non-resource paths.
func grantOf(request string) (g grant, ok bool) {
	method, path, _ := strings.Cut(request, " ")
	path, watch := strings.CutSuffix(path, "?watch")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		g.group, parts = parts[1], parts[3:]
	default:
		return grant{}, false
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	g.resource = parts[0]
	named := len(parts) >= 2
	if len(parts) >= 3 {
		g.resource += "/" + parts[2]
	}
	switch {
	case method == http.MethodGet && watch:
		g.verb = "watch"
	case method == http.MethodGet && named:
		g.verb = "get"
	case method == http.MethodGet:
		g.verb = "list"
	case method == http.MethodPost:
		g.verb = "create"
	case method == http.MethodPut:
		g.verb = "update"
	case method == http.MethodPatch:
		g.verb = "patch"
	case method == http.MethodDelete && named:
		g.verb = "delete"
	case method == http.MethodDelete:
		g.verb = "deletecollection"
	default:
		return grant{}, false
	}
	return g, true
}

// TestServeWithChartRBACInOneNamespace: with watchNamespace, the chart grants namespaced Roles only, and serve
// with the chart's --watch-namespace works with them: it reconciles that namespace's resources, leaves another
// namespace's alone, and is denied nothing; reading the custom resources elsewhere or cluster-wide is Forbidden.
func TestServeWithChartRBACInOneNamespace(t *testing.T) {
	env := kubetest.StartT(t, filepath.Join("..", "..", "controllers", "testdata", "crds"))
	admin := kubetest.Client(t, env)
	ctx := context.Background()
	release, apps, elsewhere := helmtest.Namespace, "apps", "elsewhere"
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("watchNamespace: "+apps+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := asChart(t, env, admin, []string{release, apps, elsewhere}, values)
	// The one cluster-wide grant: the workload CA's TokenReviews, cluster-scoped, and the labels of sidecars' pods.
	for _, o := range helmtest.OfKind(run.objs, "ClusterRole") {
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		if len(rules) != 2 || fmt.Sprint(rules[0]) != fmt.Sprint(map[string]any{"apiGroups": []any{"authentication.k8s.io"},
			"resources": []any{"tokenreviews"}, "verbs": []any{"create"}}) ||
			fmt.Sprint(rules[1]) != fmt.Sprint(map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"get"}}) {
			t.Fatalf("watchNamespace renders the ClusterRole %s with %v: want tokenreviews create and pods get only", o.GetName(), rules)
		}
	}
	if a := run.applied; a["ClusterRole"] != 1 || a["ClusterRoleBinding"] != 1 {
		t.Fatalf("applied %v, want one ClusterRole and its binding for the workload CA's TokenReviews", a)
	}
	user, kubeconfig, rec := run.user, run.kubeconfig, run.rec

	ns := demoNameServer(t)
	mine := &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "demo"},
		Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{ns.Addr()}}}
	theirs := &v1alpha1.NameServerSource{ObjectMeta: metav1.ObjectMeta{Namespace: elsewhere, Name: "demo"},
		Spec: v1alpha1.NameServerSourceSpec{Addresses: []string{"127.0.0.1:1"}}}
	for _, o := range []client.Object{mine, theirs} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	args, files := run.serveArgsAsMounted(t, "--leader-elect", "--watch-namespace", "--tls-", "--ca-")
	if !slices.Contains(args, "--watch-namespace="+apps) {
		t.Fatalf("the chart's args %q do not watch %s", run.args, apps)
	}
	p := serveInProcess(t, args...)
	p.waitLog(t, "serving xDS", 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(mine), mine); err != nil {
			t.Fatal(err)
		}
		if meta.IsStatusConditionTrue(mine.Status.Conditions, v1alpha1.ConditionReady) && mine.Status.Topics == int32(ns.TopicCount()) {
			break
		}
		if _, denied := rec.snapshot(); len(denied) > 0 || time.Now().After(deadline) {
			t.Fatalf("status %+v\ndenied: %v\nlogs:\n%s", mine.Status, denied, p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := admin.Get(ctx, client.ObjectKeyFromObject(theirs), theirs); err != nil {
		t.Fatal(err)
	}
	if len(theirs.Status.Conditions) != 0 {
		t.Errorf("the NameServerSource of another namespace was reconciled: %+v", theirs.Status)
	}
	var sources []struct {
		Source string `json:"source"`
	}
	operator := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: files.clientConfig(t, true)}}
	resp, err := operator.Get("https://" + p.addr(t, "serving the admin API", time.Second) + "/api/v1/sources")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&sources)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET /api/v1/sources: %s, %v", resp.Status, err)
	}
	if len(sources) != 1 || sources[0].Source != "nss:"+apps+"/demo" {
		t.Errorf("sources %+v, want only %s's", sources, apps)
	}
	// The workload CA reviews tokens with the ClusterRole of its own; its sidecars may be in any namespace.
	checkWorkloadCA(t, p, files, env, rec, elsewhere, "payments")
	if _, denied := rec.snapshot(); len(denied) > 0 {
		t.Errorf("the API server denied the controller:\n%s", strings.Join(denied, "\n"))
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	as, err := client.New(cfg, client.Options{Scheme: admin.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := as.List(ctx, &v1alpha1.NameServerSourceList{}, client.InNamespace(apps)); err != nil {
		t.Fatalf("control: list NameServerSources in %s: %v", apps, err)
	}
	for what, call := range map[string]func() error{
		"list NameServerSources in every namespace": func() error { return as.List(ctx, &v1alpha1.NameServerSourceList{}) },
		"get a NameServerSource elsewhere":          func() error { return as.Get(ctx, client.ObjectKeyFromObject(theirs), &v1alpha1.NameServerSource{}) },
		"update a status elsewhere":                 func() error { return as.Status().Update(ctx, theirs) },
	} {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s as %s: %v, want Forbidden", what, user, err)
		}
	}
}

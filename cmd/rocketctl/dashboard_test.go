package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// recordBrowser replaces openBrowser for the test with one that records the URLs it is given and fails with err.
func recordBrowser(t *testing.T, err error) *[]string {
	t.Helper()
	var opened []string
	old := openBrowser
	openBrowser = func(u string) error {
		opened = append(opened, u)
		return err
	}
	t.Cleanup(func() { openBrowser = old })
	return &opened
}

// rocketctlRun runs one command line in process as given: no --server unless args have it.
func rocketctlRun(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"rocketctl"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// TestDashboardAgainstServer opens each page of a real control plane's dashboard (`rocketpilot serve --demo`, a Go
// sidecar connected): the URL is printed and handed to the browser, with the page's path (a name escaped), and the
// server answers it with the dashboard's page; --browser=false only prints it; a browser that cannot be opened
// leaves the URL to open by hand and is no error.
func TestDashboardAgainstServer(t *testing.T) {
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	sc, err := sidecar.Dial(s.xds, sidecar.Options{NodeID: "orders-7f9c"})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sc.Resolve(ctx, embedded.DemoTopic); err != nil { // connected: the proxy has a page
		t.Fatal(err)
	}
	base := "http://" + s.admin
	opened := recordBrowser(t, nil)

	if out := mustCtl(t, s, "dashboard", "--browser=false"); out != base+"/\n" {
		t.Fatalf("dashboard --browser=false: %q, want %q", out, base+"/\n")
	}
	if len(*opened) != 0 {
		t.Fatalf("--browser=false opened %v", *opened)
	}
	for _, c := range []struct {
		args   []string
		path   string
		served bool // the server has the page: the object exists
	}{
		{[]string{"dashboard"}, "/", true},
		{[]string{"dashboard", "--page", "overview"}, "/", true},
		{[]string{"dashboard", "--page", "topics"}, "/topics", true},
		{[]string{"dashboard", "--page", "proxies"}, "/proxies", true},
		{[]string{"dashboard", "--page", "sources"}, "/sources", true},
		{[]string{"dashboard", "--page=changes"}, "/changes", true},
		{[]string{"dashboard", "topic", embedded.DemoTopic}, "/topics/" + embedded.DemoTopic, true},
		{[]string{"dashboard", "proxy", "orders-7f9c"}, "/proxies/orders-7f9c", true},
		{[]string{"dashboard", "topic", "%RETRY%orders|eu"}, "/topics/%25RETRY%25orders%7Ceu", false}, // RocketMQ allows % and |
		{[]string{"dashboard", "proxy", "a/b c"}, "/proxies/a%2Fb%20c", false},
	} {
		*opened = nil
		want := base + c.path
		if out := mustCtl(t, s, c.args...); out != want+"\n" {
			t.Errorf("%v: printed %q, want %q", c.args, out, want)
		}
		if len(*opened) != 1 || (*opened)[0] != want {
			t.Errorf("%v: opened %q, want [%s]", c.args, *opened, want)
		}
		if !c.served {
			continue
		}
		resp, err := http.Get(want)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%v: GET %s: %s %q, want the dashboard's page", c.args, want, resp.Status, resp.Header.Get("Content-Type"))
		}
	}

	*opened = nil
	openBrowser = func(u string) error {
		*opened = append(*opened, u)
		return errors.New(`exec: "xdg-open": executable file not found in $PATH`)
	}
	out, errOut, code := ctl(t, s, "dashboard", "--page", "topics")
	if code != 0 || out != base+"/topics\n" || !strings.Contains(errOut, "could not open a browser") ||
		!strings.Contains(errOut, "open "+base+"/topics yourself") {
		t.Fatalf("a browser that cannot be opened: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestDashboardUsage: arguments and flags dashboard cannot take are usage errors before any request or browser.
func TestDashboardUsage(t *testing.T) {
	opened := recordBrowser(t, nil)
	closed := "http://127.0.0.1:1" // never asked
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dashboard", "--page", "brokers"}, `error: --page "brokers": want one of overview, topics, proxies, sources, changes`},
		{[]string{"dashboard", "topics"}, `error: unknown command "topics" for "rocketctl dashboard"; for the topics page, --page topics`},
		{[]string{"dashboard", "bogus"}, `error: unknown command "bogus" for "rocketctl dashboard"`},
		{[]string{"dashboard", "topic"}, "error: accepts 1 arg(s), received 0"},
		{[]string{"dashboard", "topic", "bad name!"}, `error: invalid RocketMQ name: topic "bad name!" has ' ' at byte 3`},
		{[]string{"dashboard", "topic", "t", "--page", "topics"}, "error: unknown flag: --page"},
		{[]string{"dashboard", "proxy"}, "error: accepts 1 arg(s), received 0"},
		{[]string{"dashboard", "--port", "8080"}, "error: --port is for Kubernetes"},
		{[]string{"dashboard", "-n", "rocketmq-system"}, "error: --server names the admin API to open, while --kube, -n"},
		{[]string{"dashboard", "--kube"}, "give one or the other"},
	} {
		out, errOut, code := rocketctlAt(closed, c.args...)
		if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("rocketctl %v: exit %d, stdout %q, stderr %q; want exit 1 and %q", c.args, code, out, errOut, c.want)
		}
	}
	if len(*opened) != 0 {
		t.Fatalf("usage errors opened %v", *opened)
	}
}

// TestDashboardServerNotRocketpilot: a --server that answers but is not rocketpilot (a web server's HTML 404), or
// does not answer, is named as such, as for every command, and no browser is opened.
func TestDashboardServerNotRocketpilot(t *testing.T) {
	opened := recordBrowser(t, nil)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte("<!DOCTYPE html>\n<html><head><title>Not Found</title></head><body>nope</body></html>"))
	}))
	defer web.Close()
	out, errOut, code := rocketctlAt(web.URL, "dashboard")
	if code != 1 || out != "" || !strings.Contains(errOut, "does not answer as rocketpilot's admin API: GET /api/v1/version gave 404 Not Found") ||
		!strings.Contains(errOut, "<!DOCTYPE html>") {
		t.Errorf("an HTML 404 as --server: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := ln.Addr().String()
	ln.Close()
	out, errOut, code = rocketctlAt(unreachable, "dashboard", "--page", "topics")
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot reach rocketpilot's admin API at "+unreachable) {
		t.Errorf("an unreachable --server: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Not given --server (the default, or $ROCKETCTL_SERVER), it points at the Kubernetes way too.
	t.Setenv("ROCKETCTL_SERVER", unreachable)
	if _, errOut, code = rocketctlRun("dashboard"); code != 1 || !strings.Contains(errOut, "cannot reach") ||
		!strings.Contains(errOut, "`rocketctl dashboard -n NAMESPACE` port-forwards to a rocketpilot pod") {
		t.Errorf("an unreachable $ROCKETCTL_SERVER: exit %d, stderr %q", code, errOut)
	}
	if len(*opened) != 0 {
		t.Fatalf("opened %v", *opened)
	}
}

// TestDashboardTLS: with the TLS flags the admin API is reached, and the dashboard opened, over https.
func TestDashboardTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "test-ca")
	srv := ca.Server(t, "rocketpilot")
	f := certtest.Write(t, dir, "ca.crt", ca.PEM, "tls.crt", srv.Cert, "tls.key", srv.Key)
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--tls-cert", f[1], "--tls-key", f[2])
	opened := recordBrowser(t, nil)
	want := "https://" + s.admin + "/proxies"
	if out := mustCtl(t, s, "--tls-ca", f[0], "dashboard", "--page", "proxies"); out != want+"\n" || len(*opened) != 1 || (*opened)[0] != want {
		t.Fatalf("dashboard over TLS: printed %q, opened %q; want %s", out, *opened, want)
	}
}

// TestDashboardKubernetes finds rocketpilot's pod through a real kube-apiserver (envtest): which pods are picked,
// the errors when none is running and ready, and which flags mean Kubernetes. envtest has no kubelet (nor
// scheduler), so no pod runs and the port-forward itself is not exercised end to end here: against a pod whose
// status says Running and Ready the API server refuses the forward (the pod has no node), and the command must
// report that, naming the pod and port, within its --request-timeout rather than hang.
func TestDashboardKubernetes(t *testing.T) {
	env := kubetest.StartT(t)
	kubeconfig := kubetest.Kubeconfig(t, env)
	k8s := kubetest.Client(t, env)
	ctx := context.Background()
	opened := recordBrowser(t, nil)
	const ns = "rocketmq-system"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	kube := func(args ...string) (string, string, int) {
		return rocketctlRun(append([]string{"--kubeconfig", kubeconfig, "--request-timeout", "20s"}, args...)...)
	}
	wantErr := func(what string, args []string, want ...string) string {
		t.Helper()
		out, errOut, code := kube(args...)
		if code != 1 || out != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and nothing on stdout", what, code, out, errOut)
		}
		for _, w := range want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr %q, want %q in it", what, errOut, w)
			}
		}
		return errOut
	}

	// No pod: the error names the namespace and the selector. --kubeconfig alone means Kubernetes, in the
	// context's namespace (envtest's names none: "default"); -n names another.
	sel := `--selector "app.kubernetes.io/name=rocketpilot,app.kubernetes.io/component=control-plane"`
	wantErr("no pod, --kubeconfig only", []string{"dashboard"}, `no rocketpilot pod in namespace "default" matches `+sel)
	wantErr("no pod, -n", []string{"dashboard", "-n", ns, "--browser=false"}, `no rocketpilot pod in namespace "rocketmq-system" matches `+sel)
	wantErr("no pod, -A", []string{"dashboard", "-A"}, `no rocketpilot pod in any namespace matches `+sel)
	wantErr("a bad selector", []string{"dashboard", "-n", ns, "-l", "a in"}, `--selector "a in"`)

	// Pods that cannot serve are not picked, and the error says what each is.
	chartLabels := map[string]string{"app.kubernetes.io/name": "rocketpilot", "app.kubernetes.io/instance": "rp",
		"app.kubernetes.io/component": "control-plane"}
	running := corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}}
	ready := corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	createPod(t, k8s, ns, "rocketpilot-a", chartLabels, nil)      // Pending, as the API server creates it
	createPod(t, k8s, ns, "rocketpilot-b", chartLabels, &running) // Running, not Ready
	createPod(t, k8s, ns, "other", map[string]string{"app": "other"}, &ready)
	wantErr("no ready pod", []string{"dashboard", "-n", ns},
		`no running, ready rocketpilot pod in namespace "rocketmq-system" (`+sel+`): `+
			"rocketmq-system/rocketpilot-a is Pending; rocketmq-system/rocketpilot-b is Running, not Ready")

	// A running, ready pod is picked, and the forward to its admin port (the chart's port named "admin") is
	// tried: the API server refuses it, which is reported, bounded, with no URL printed and no browser opened.
	createPod(t, k8s, ns, "rocketpilot-c", chartLabels, &ready)
	for _, args := range [][]string{
		{"dashboard", "-n", ns},
		{"dashboard", "-A", "--page", "topics"},
		{"--context", kubeContext(t, kubeconfig), "-n", ns, "dashboard", "topic", "TopicTest", "--port", "0"},
	} {
		start := time.Now()
		done := make(chan string)
		go func() {
			done <- wantErr("a ready pod "+strings.Join(args, " "), args, "cannot port-forward to pod rocketmq-system/rocketpilot-c (port 19123): ")
		}()
		select {
		case errOut := <-done:
			t.Logf("%v: failed after %s: %s", args, time.Since(start).Round(time.Millisecond), errOut)
		case <-time.After(60 * time.Second):
			t.Fatalf("dashboard %v still running after 60s: the failed port-forward hangs", args)
		}
	}
	// A pod on a node whose kubelet takes the API server's connection and never answers: the forward is never
	// ready, and --request-timeout bounds the wait.
	kubelet, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := kubelet.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	defer func() {
		kubelet.Close()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	}()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "silent"}}
	if err := k8s.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	node.Status = corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubelet.Addr().(*net.TCPAddr).Port)}}}
	if err := k8s.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	silent := map[string]string{"app.kubernetes.io/name": "rocketpilot", "app.kubernetes.io/component": "control-plane", "on": "silent"}
	createPodOn(t, k8s, ns, "rocketpilot-silent", "silent", silent, &ready)
	start := time.Now()
	errOut := wantErr("a silent kubelet", []string{"--request-timeout", "2s", "dashboard", "-n", ns, "-l", "on=silent"},
		"cannot port-forward to pod rocketmq-system/rocketpilot-silent (port 19123): not ready after 2s (--request-timeout)")
	t.Logf("a silent kubelet: failed after %s: %s", time.Since(start).Round(time.Millisecond), errOut)

	// --selector picks other pods; --kube alone means Kubernetes.
	wantErr("--selector", []string{"dashboard", "--kube", "-n", ns, "-l", "app=other"}, "cannot port-forward to pod rocketmq-system/other (port 19000): ")
	if len(*opened) != 0 {
		t.Fatalf("opened %v", *opened)
	}
}

// createPod creates a pod with rocketpilot's admin port (named as the chart names it) when labels are the
// chart's, and sets its status through the status subresource: with no kubelet, nothing else does.
func createPod(t *testing.T, k8s client.Client, ns, name string, labels map[string]string, status *corev1.PodStatus) {
	t.Helper()
	createPodOn(t, k8s, ns, name, "", labels, status)
}

// createPodOn is createPod with the pod bound to a node.
func createPodOn(t *testing.T, k8s client.Client, ns, name, node string, labels map[string]string, status *corev1.PodStatus) {
	t.Helper()
	ctx := context.Background()
	c := corev1.Container{Name: "app", Image: "example.invalid/app:1"}
	if labels["app.kubernetes.io/name"] == "rocketpilot" {
		c = corev1.Container{Name: "rocketpilot", Image: "example.invalid/rocketpilot:1",
			Ports: []corev1.ContainerPort{{Name: "xds-grpc", ContainerPort: 18000}, {Name: "admin", ContainerPort: 19123}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromString("admin"), Scheme: corev1.URISchemeHTTP}}}}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{c}}}
	if err := k8s.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		pod.Status = *status
		if err := k8s.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
}

// kubeContext is the current context of a kubeconfig, for --context.
func kubeContext(t *testing.T, kubeconfig string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil || cfg.CurrentContext == "" {
		t.Fatalf("kubeconfig's current context: %q, %v", cfg.CurrentContext, err)
	}
	return cfg.CurrentContext
}

// TestDashboardAdminPort: the port forwarded to is the container port the chart names "admin" (serve's default
// without one), and the dashboard is https when the probes reach that port over HTTPS, as the chart's do with TLS.
func TestDashboardAdminPort(t *testing.T) {
	pod := func(ports []corev1.ContainerPort, probePort intstr.IntOrString, scheme corev1.URIScheme) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "rocketpilot", Ports: ports,
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: probePort, Scheme: scheme}}}}}}}
	}
	chart := []corev1.ContainerPort{{Name: "xds-grpc", ContainerPort: 18000}, {Name: "admin", ContainerPort: 19500}, {Name: "metrics", ContainerPort: 19001}}
	for _, c := range []struct {
		pod   *corev1.Pod
		port  int32
		https bool
	}{
		{pod(chart, intstr.FromString("admin"), corev1.URISchemeHTTP), 19500, false},
		{pod(chart, intstr.FromString("admin"), corev1.URISchemeHTTPS), 19500, true},
		{pod(chart, intstr.FromInt32(19500), corev1.URISchemeHTTPS), 19500, true},
		{pod(chart, intstr.FromString("metrics"), corev1.URISchemeHTTPS), 19500, false}, // another port's probe
		{pod(nil, intstr.FromInt32(19000), corev1.URISchemeHTTPS), 19000, true},
		{&corev1.Pod{}, 19000, false},
	} {
		if port, https := adminPort(c.pod); port != c.port || https != c.https {
			t.Errorf("adminPort(%+v) = %d, %v; want %d, %v", c.pod.Spec.Containers, port, https, c.port, c.https)
		}
	}
}

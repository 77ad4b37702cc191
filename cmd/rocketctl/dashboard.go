package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	streamhttp "k8s.io/streaming/pkg/httpstream"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// dashboardPages are the pages --page opens, by name; the first is the default.
var dashboardPages = []struct{ name, path string }{
	{"overview", "/"}, {"topics", "/topics"}, {"proxies", "/proxies"}, {"sources", "/sources"}, {"changes", "/changes"},
}

// dashboardSelector selects the pods the Helm chart (charts/rocketpilot) runs: its selector labels less
// app.kubernetes.io/instance, which is the release's name and so not known here.
const dashboardSelector = "app.kubernetes.io/name=rocketpilot,app.kubernetes.io/component=control-plane"

// adminPortName is the chart's name for the admin API's container port; a pod without it is reached at
// defaultAdminPort, serve's default --admin-address port.
const (
	adminPortName    = "admin"
	defaultAdminPort = 19000
)

// openBrowser opens url in the user's browser without waiting for it; tests replace it.
var openBrowser = func(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait() // reaped, not awaited: some openers stay as long as the browser does
	return nil
}

// dashboardFlags are dashboard's own flags.
type dashboardFlags struct {
	page     string
	browser  bool
	kube     bool
	selector string
	port     int
	address  string
}

func newDashboardCommand(g *globals) *cobra.Command {
	f := &dashboardFlags{}
	var pages []string
	for _, p := range dashboardPages {
		pages = append(pages, p.name)
	}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Open rocketpilot's web dashboard in a browser, port-forwarding to a rocketpilot pod in Kubernetes",
		Long: "dashboard prints the URL of the read-only web dashboard rocketpilot serves on its admin address and opens it in\n" +
			"a browser (--browser=false only prints it). Without Kubernetes flags it is the admin API at --server, once that\n" +
			"answers as rocketpilot. With --kube, -n, --context, --kubeconfig or -A it finds a running, ready rocketpilot pod\n" +
			"(--selector), port-forwards a local port (--address, --port) to the pod's admin port and stays until Ctrl-C.",
		Example: `  rocketctl dashboard
  rocketctl dashboard --page proxies --browser=false
  rocketctl dashboard topic TopicTest
  rocketctl dashboard proxy orders-7f9c
  rocketctl dashboard -n rocketmq-system
  rocketctl dashboard --kube --port 19000 --page topics`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 && slices.Contains(pages, args[0]) {
				return fmt.Errorf("unknown command %q for %q; for the %s page, --page %s", args[0], c.CommandPath(), args[0], args[0])
			}
			return cobra.NoArgs(c, args)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			i := slices.Index(pages, f.page)
			if i < 0 {
				return usageError{fmt.Errorf("--page %q: want one of %s", f.page, strings.Join(pages, ", "))}
			}
			return runDashboard(cmd, g, f, dashboardPages[i].path)
		},
	}
	topic := dashboardObjectCommand(g, f, "topic NAME", "Open a topic's page of the dashboard", "TopicTest", "/topics/", "topics", routing.ValidTopic)
	proxy := dashboardObjectCommand(g, f, "proxy NODE", "Open a connected proxy's page of the dashboard", "orders-7f9c", "/proxies/", "proxies", nil)
	cmd.AddCommand(topic, proxy)
	cmd.Flags().StringVar(&f.page, "page", pages[0], "the page to open: "+strings.Join(pages, ", "))
	_ = cmd.RegisterFlagCompletionFunc("page", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return pages, cobra.ShellCompDirectiveNoFileComp
	})
	pf := cmd.PersistentFlags()
	pf.BoolVar(&f.browser, "browser", true, "open the URL in a browser (false: only print it)")
	pf.BoolVar(&f.kube, "kube", false, "find rocketpilot in Kubernetes and port-forward to it (implied by -n, --context, --kubeconfig, -A)")
	pf.StringVarP(&f.selector, "selector", "l", dashboardSelector, "label selector of rocketpilot's pods, in Kubernetes")
	pf.IntVar(&f.port, "port", 0, "local port to forward from, in Kubernetes (0: any free port)")
	pf.StringVar(&f.address, "address", "127.0.0.1", "local address to listen on, in Kubernetes")
	return cmd
}

// dashboardObjectCommand is a subcommand that opens one object's page, prefix and the escaped name; valid, when not
// nil, rejects a name no such object can have before any request or port-forward, as describe does.
func dashboardObjectCommand(g *globals, f *dashboardFlags, use, short, example, prefix, kind string, valid func(string) error) *cobra.Command {
	verb, _, _ := strings.Cut(use, " ")
	return &cobra.Command{
		Use:               use,
		Short:             short,
		Example:           fmt.Sprintf("  rocketctl dashboard %s %s\n  rocketctl dashboard %s %s -n rocketmq-system", verb, example, verb, example),
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.positionalCompletion(kind),
		RunE: func(cmd *cobra.Command, args []string) error {
			if valid != nil {
				if err := valid(args[0]); err != nil {
					return err
				}
			}
			return runDashboard(cmd, g, f, prefix+url.PathEscape(args[0]))
		},
	}
}

// runDashboard opens path of the dashboard: at --server, or through a port-forward to a pod in Kubernetes.
func runDashboard(cmd *cobra.Command, g *globals, f *dashboardFlags, path string) error {
	kube, err := f.inKubernetes(cmd)
	if err != nil {
		return err
	}
	if !kube {
		for _, name := range []string{"selector", "port", "address"} {
			if cmd.Flags().Changed(name) {
				return usageError{fmt.Errorf("--%s is for Kubernetes (with --kube, -n, --context, --kubeconfig or -A); "+
					"without them the dashboard is at --server", name)}
			}
		}
		return serverDashboard(cmd, g, f, path)
	}
	if f.port < 0 || f.port > 65535 {
		return usageError{fmt.Errorf("--port %d: want 0 (any free port) to 65535", f.port)}
	}
	return kubeDashboard(cmd.Context(), g, f, path)
}

// inKubernetes reports whether the dashboard is found in Kubernetes: --kube says so, else any of kubectl's flags
// does. Those with an explicit --server contradict each other: which was meant is not guessed.
func (f *dashboardFlags) inKubernetes(cmd *cobra.Command) (bool, error) {
	fl := cmd.Flags()
	kube := f.kube
	if !fl.Changed("kube") {
		kube = slices.ContainsFunc([]string{"namespace", "context", "kubeconfig", "all-namespaces"}, fl.Changed)
	}
	if kube && fl.Changed("server") {
		return false, usageError{errors.New("--server names the admin API to open, while --kube, -n, --context, --kubeconfig and -A " +
			"find rocketpilot in Kubernetes: give one or the other")}
	}
	return kube, nil
}

// serverDashboard prints the URL of path at --server and opens it, once the server answers as rocketpilot: a
// browser shown someone else's page, or none, explains less than the error does.
func serverDashboard(cmd *cobra.Command, g *globals, f *dashboardFlags, path string) error {
	var v server.VersionInfo
	if err := g.getJSON(cmd.Context(), "/api/v1/version", nil, &v); err != nil {
		var notUs notRocketpilotError
		if !errors.As(err, &notUs) && !cmd.Flags().Changed("server") {
			err = fmt.Errorf("%w; in Kubernetes, `rocketctl dashboard -n NAMESPACE` port-forwards to a rocketpilot pod", err)
		}
		return err
	}
	u := g.adminBase() + path
	fmt.Fprintln(g.out, u)
	f.open(g, u)
	return nil
}

// adminBase is --server as a URL, as getJSON reaches it: http:// when it names no scheme, https with the TLS flags.
func (g *globals) adminBase() string {
	base := strings.TrimRight(g.server, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if g.tls.enabled() {
		base = "https://" + strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	}
	return base
}

// open opens u in a browser when --browser says so; a browser that cannot be opened is not an error, the URL
// having been printed.
func (f *dashboardFlags) open(g *globals, u string) {
	if !f.browser {
		return
	}
	if err := openBrowser(u); err != nil {
		fmt.Fprintf(g.errOut, "could not open a browser (%v): open %s yourself\n", err, u)
	}
}

// kubeDashboard port-forwards a local port to a running, ready rocketpilot pod's admin port, prints and opens the
// dashboard's URL there, and keeps the forward until ctx ends (Ctrl-C) or the forward does.
func kubeDashboard(ctx context.Context, g *globals, f *dashboardFlags, path string) error {
	cfg, ns, err := g.kube.restConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	pod, err := findDashboardPod(ctx, g, cs, ns, f.selector)
	if err != nil {
		return err
	}
	podName := pod.Namespace + "/" + pod.Name
	remote, https := adminPort(pod)
	reqURL := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer, err := portForwardDialer(cfg, reqURL)
	if err != nil {
		return err
	}
	fwdCtx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan struct{})
	// client-go's own "Forwarding from" lines are left out: the line below says it, with the URL.
	pf, err := portforward.NewOnAddressesForStreamingWithContext(fwdCtx, dialer, []string{f.address},
		[]string{fmt.Sprintf("%d:%d", f.port, remote)}, ready, io.Discard, g.errOut)
	if err != nil {
		return usageError{fmt.Errorf("--address %q, --port %d: %w", f.address, f.port, err)}
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	var bound <-chan time.Time // an API server that never answers the upgrade does not hang the command
	if g.timeout > 0 {
		t := time.NewTimer(g.timeout)
		defer t.Stop()
		bound = t.C
	}
	select {
	case <-ready:
	case err := <-done:
		if err == nil {
			err = errors.New("it stopped before it was ready")
		}
		return fmt.Errorf("cannot port-forward to pod %s (port %d): %w", podName, remote, err)
	case <-bound:
		return fmt.Errorf("cannot port-forward to pod %s (port %d): not ready after %s (--request-timeout)", podName, remote, g.timeout)
	case <-ctx.Done():
		return nil // interrupted before the forward was ready
	}
	ports, err := pf.GetPorts()
	if err == nil && len(ports) == 0 {
		err = errors.New("no port")
	}
	if err != nil {
		return fmt.Errorf("port-forward to pod %s: its local port: %w", podName, err)
	}
	scheme := "http"
	if https || g.tls.enabled() {
		scheme = "https"
	}
	base := scheme + "://" + net.JoinHostPort(urlHost(f.address), strconv.Itoa(int(ports[0].Local)))
	u := base + path
	fmt.Fprintf(g.out, "dashboard at %s (port-forwarded to pod %s); Ctrl-C to stop\n", u, podName)
	// What answers through the forward: a port that is not rocketpilot's admin API, or TLS rocketctl cannot
	// verify, is worth a warning; the browser may still get through, so the forward stays.
	through := *g
	through.server = base
	var v server.VersionInfo
	if err := through.getJSON(ctx, "/api/v1/version", nil, &v); err != nil && ctx.Err() == nil {
		fmt.Fprintf(g.errOut, "warning: through the port-forward: %v\n", err)
	}
	if ctx.Err() == nil {
		f.open(g, u)
	}
	err = <-done
	if ctx.Err() != nil {
		return nil // Ctrl-C
	}
	if err == nil {
		err = errors.New("it stopped")
	}
	return fmt.Errorf("the port-forward to pod %s ended: %w", podName, err)
}

// restConfig is the client configuration of kubectl's flags and the namespace to look in ("" with -A): client
// builds rocketpilot's kinds' client on it, the dashboard its pods' and their port-forward.
func (k *kubeFlags) restConfig() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes configuration: %w", err)
	}
	ns := k.namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, "", err
		}
	}
	if k.allNamespaces {
		ns = ""
	}
	return cfg, ns, nil
}

// findDashboardPod returns the first running, ready pod of selector in ns (any namespace when ""), by namespace
// and name; its errors name where it looked and, for pods that are not ready, what each is.
func findDashboardPod(ctx context.Context, g *globals, cs kubernetes.Interface, ns, selector string) (*corev1.Pod, error) {
	if _, err := labels.Parse(selector); err != nil {
		return nil, usageError{fmt.Errorf("--selector %q: %w", selector, err)}
	}
	where := fmt.Sprintf("in namespace %q", ns)
	if ns == "" {
		where = "in any namespace"
	}
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list pods from the Kubernetes API: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("no rocketpilot pod %s matches --selector %q: give its namespace with -n (or -A for any), "+
			"or its pods' labels with --selector", where, selector)
	}
	pods := list.Items
	slices.SortFunc(pods, func(a, b corev1.Pod) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	var why []string
	for i := range pods {
		if reason := notServing(&pods[i]); reason != "" {
			why = append(why, pods[i].Namespace+"/"+pods[i].Name+" is "+reason)
			continue
		}
		return &pods[i], nil
	}
	return nil, fmt.Errorf("no running, ready rocketpilot pod %s (--selector %q): %s", where, selector, strings.Join(why, "; "))
}

// notServing says why a pod cannot serve the dashboard: terminating, not running, or not ready (rocketpilot's
// readiness is its first sync); "" when it can.
func notServing(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	if p.Status.Phase != corev1.PodRunning {
		if p.Status.Phase == "" {
			return "without a phase yet"
		}
		return string(p.Status.Phase)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return ""
		}
	}
	return "Running, not Ready"
}

// adminPort is the pod's admin container port (the chart names it "admin") and whether its probes reach it over
// HTTPS, as the chart's do with TLS on: then the dashboard is https too.
func adminPort(p *corev1.Pod) (port int32, https bool) {
	port = defaultAdminPort
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == adminPortName {
				port = cp.ContainerPort
			}
		}
	}
	for _, c := range p.Spec.Containers {
		for _, probe := range []*corev1.Probe{c.StartupProbe, c.ReadinessProbe, c.LivenessProbe} {
			if probe == nil || probe.HTTPGet == nil {
				continue
			}
			hp := probe.HTTPGet.Port
			if (hp.Type == intstr.String && hp.StrVal == adminPortName) || (hp.Type == intstr.Int && hp.IntVal == port) {
				https = https || probe.HTTPGet.Scheme == corev1.URISchemeHTTPS
			}
		}
	}
	return port, https
}

// portForwardDialer dials the pod's port-forward as kubectl does: SPDY tunnelled over a WebSocket first, which
// proxies that drop SPDY's upgrade pass, then SPDY itself for API servers that refuse the tunnel.
func portForwardDialer(cfg *rest.Config, u *url.URL) (streamhttp.Dialer, error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	tunnel, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, cfg)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialerForStreaming(tunnel, dialer, func(err error) bool {
		return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
	}), nil
}

// urlHost is the host a browser reaches the listen address at: a wildcard address at the loopback.
func urlHost(address string) string {
	switch address {
	case "0.0.0.0", "":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return address
}

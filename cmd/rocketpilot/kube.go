package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
)

// kubeOptions are the flags of the Kubernetes controllers.
type kubeOptions struct {
	enabled        bool
	kubeconfig     string
	context        string
	namespace      string
	leaderElect    bool
	leaseNamespace string
	leaseName      string
}

func (k *kubeOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&k.enabled, "kubernetes", false, "reconcile NameServerSources, TopicRoutes and TopicBindings from the Kubernetes API")
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (in-cluster configuration, then $KUBECONFIG and ~/.kube/config, when empty)")
	f.StringVar(&k.context, "kube-context", "", "kubeconfig context (the current one when empty)")
	f.StringVar(&k.namespace, "watch-namespace", "", "reconcile resources of this namespace only (all namespaces when empty)")
	f.BoolVar(&k.leaderElect, "leader-elect", true, "elect one replica to write status and events (a Lease); every replica serves xDS")
	f.StringVar(&k.leaseNamespace, "leader-election-namespace", "", "namespace of the Lease ($POD_NAMESPACE, the pod's own, or default when empty)")
	f.StringVar(&k.leaseName, "leader-election-id", "rocketpilot-leader", "name of the Lease")
}

// startManager starts the controllers' manager. It returns once the manager's caches are synced.
func (k *kubeOptions) startManager(ctx context.Context, log *slog.Logger, opts controllers.Options, done func(error)) (ctrl.Manager, error) {
	ctrl.SetLogger(logr.FromSlogHandler(log.With("component", "controllers").Handler()))
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes configuration: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	mopts := ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                k.leaderElect,
		LeaderElectionID:              k.leaseName,
		LeaderElectionNamespace:       k.leaseNamespaceOrDefault(),
		LeaderElectionReleaseOnCancel: true,
		Client:                        client.Options{FieldOwner: "rocketpilot"},
	}
	if k.namespace != "" {
		mopts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{k.namespace: {}}}
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	if err := controllers.Setup(mgr, opts); err != nil {
		return nil, err
	}
	go func() { done(mgr.Start(ctx)) }()
	syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		return nil, fmt.Errorf("the Kubernetes caches did not sync (are the CRDs installed? kubectl apply -f crds/manifests)")
	}
	log.Info("reconciling custom resources", "namespace", k.namespace, "leaderElection", k.leaderElect)
	return mgr, nil
}

func (k *kubeOptions) leaseNamespaceOrDefault() string {
	if k.leaseNamespace != "" {
		return k.leaseNamespace
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

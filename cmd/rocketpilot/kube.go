package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
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
	leaseDuration  time.Duration
	renewDeadline  time.Duration
	retryPeriod    time.Duration
	current        atomic.Pointer[managerRef] // the running manager, for the leader metric
	// sharePolling: the Lease's holder alone polls the NameServers; the others follow it (package peer). Its
	// identity carries the address the others reach its peer service at (advertise).
	sharePolling bool
	advertise    func() string
	leases       atomic.Pointer[kubernetes.Clientset] // for leaseHolder, once the manager's configuration is known
}

// setLoggerOnce sets controller-runtime's process-wide logger once: a process runs one serve, but tests run several.
var setLoggerOnce sync.Once

type managerRef struct{ ctrl.Manager }

// leading reports 1 while the running manager leads (it holds the Lease, or leader election is off).
func (k *kubeOptions) leading() float64 {
	m := k.current.Load()
	if m == nil {
		return 0
	}
	select {
	case <-m.Elected():
		return 1
	default:
		return 0
	}
}

func (k *kubeOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&k.enabled, "kubernetes", false, "reconcile NameServerSources, TopicRoutes and TopicBindings from the Kubernetes API")
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (in-cluster configuration, then $KUBECONFIG and ~/.kube/config, when empty)")
	f.StringVar(&k.context, "kube-context", "", "kubeconfig context (the current one when empty)")
	f.StringVar(&k.namespace, "watch-namespace", "", "reconcile resources of this namespace only (all namespaces when empty)")
	f.BoolVar(&k.leaderElect, "leader-elect", true, "elect one replica to write status and events (a Lease); every replica serves xDS")
	f.StringVar(&k.leaseNamespace, "leader-election-namespace", "", "namespace of the Lease ($POD_NAMESPACE, the pod's own, or default when empty)")
	f.StringVar(&k.leaseName, "leader-election-id", "rocketpilot-leader", "name of the Lease")
	f.DurationVar(&k.leaseDuration, "leader-election-lease-duration", 15*time.Second, "how long a Lease holds without renewal")
	f.DurationVar(&k.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader tries to renew before it gives leadership up")
	f.DurationVar(&k.retryPeriod, "leader-election-retry-period", 2*time.Second, "how often candidates try to take the Lease")
	f.BoolVar(&k.sharePolling, "share-polling", false, "the Lease's holder alone polls the NameServers and the other replicas take its routes over its peer service, "+
		"so that replicas do not multiply the NameServers' load (needs --leader-elect; docs/architecture.md, \"Replicas and the NameServers\")")
}

// leaseIdentity is this replica's identity in the Lease: unique per manager, with the address of its peer
// service after the last '@' when polling is shared.
func (k *kubeOptions) leaseIdentity() string {
	host, _ := os.Hostname()
	id := host + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if k.sharePolling && k.advertise != nil {
		id += "@" + k.advertise()
	}
	return id
}

// leaseHolder returns the peer address of the replica holding the Lease, "" when none does (or it is this one:
// addr is never followed).
func (k *kubeOptions) leaseHolder(self string) string {
	cs := k.leases.Load()
	if cs == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease, err := cs.CoordinationV1().Leases(k.leaseNamespaceOrDefault()).Get(ctx, k.leaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	id := *lease.Spec.HolderIdentity
	at := strings.LastIndexByte(id, '@')
	if at < 0 || id[at+1:] == self {
		return ""
	}
	return id[at+1:]
}

// startManager starts the controllers' manager and returns it once its caches are synced. A manager that stops
// while ctx lives — it lost the lease, the API server went away — is replaced by a new one, with backoff: the
// reconcilers only feed the model, which keeps serving meanwhile, so losing leadership costs no xDS stream.
//
// Every manager runs in wg: waiting for it after ctx ends waits for the release of the Lease.
// restConfig is the Kubernetes API's client configuration: --kubeconfig and --kube-context, else in-cluster.
func (k *kubeOptions) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes configuration: %w", err)
	}
	return cfg, nil
}

func (k *kubeOptions) startManager(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, opts controllers.Options) (ctrl.Manager, error) {
	setLoggerOnce.Do(func() { ctrl.SetLogger(logr.FromSlogHandler(log.With("component", "controllers").Handler())) })
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	if k.sharePolling {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		k.leases.Store(cs)
	}
	first, err := k.newManager(cfg, opts)
	if err != nil {
		return nil, err
	}
	// run starts a manager and reports, when it stops, why and how long it ran.
	type stop struct {
		err error
		ran time.Duration
	}
	stopped := make(chan stop, 1)
	run := func(m ctrl.Manager) {
		ref := &managerRef{m}
		k.current.Store(ref)
		start := time.Now()
		mctx, cancel := context.WithCancel(ctx)
		elected := make(chan bool, 1)
		go func() { // the replica that holds the Lease leads the polling too
			select {
			case <-m.Elected():
				if opts.Leading != nil {
					opts.Leading(true)
				}
				elected <- true
			case <-mctx.Done():
				elected <- false
			}
		}()
		err := m.Start(mctx)
		cancel()
		if <-elected && opts.Leading != nil && ctx.Err() == nil {
			opts.Leading(false) // the Lease is lost: another replica will poll
		}
		k.current.CompareAndSwap(ref, nil)
		stopped <- stop{err, time.Since(start)}
	}
	wg.Go(func() { run(first) })
	syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !first.GetCache().WaitForCacheSync(syncCtx) {
		if ctx.Err() != nil {
			return nil, ctx.Err() // stopped meanwhile: not a failure of the caches
		}
		return nil, fmt.Errorf("the Kubernetes caches did not sync (are the CRDs installed? kubectl apply -f crds/manifests)")
	}
	log.Info("reconciling custom resources", "namespace", k.namespace, "leaderElection", k.leaderElect)
	wg.Go(func() {
		backoff := time.Second
		for {
			st := <-stopped
			if ctx.Err() != nil {
				return
			}
			if st.ran > time.Minute {
				backoff = time.Second // it ran for a while: start the backoff over
			}
			log.Warn("the controllers stopped; starting them again (xDS keeps serving the model)", "err", st.err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			m, err := k.newManager(cfg, opts)
			if err != nil {
				stopped <- stop{err: err}
				continue
			}
			wg.Go(func() { run(m) })
			// What was deleted while no manager watched sent no event to the new one: prune it once its
			// caches hold the current state.
			syncCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if m.GetCache().WaitForCacheSync(syncCtx) {
				if err := controllers.Prune(syncCtx, m.GetAPIReader(), opts.Sources, opts.Policies, k.namespace); err != nil {
					log.Warn("prune resources deleted while the controllers were down", "err", err)
				}
			}
			cancel()
		}
	})
	return first, nil
}

func (k *kubeOptions) newManager(cfg *rest.Config, opts controllers.Options) (ctrl.Manager, error) {
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
		LeaseDuration:                 &k.leaseDuration,
		RenewDeadline:                 &k.renewDeadline,
		RetryPeriod:                   &k.retryPeriod,
		Client:                        client.Options{FieldOwner: "rocketpilot"},
		// A replacement manager registers the same controller names in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if k.namespace != "" {
		mopts.Cache = cache.Options{DefaultNamespaces: map[string]cache.Config{k.namespace: {}}}
	}
	if k.leaderElect && k.sharePolling {
		// A Lease whose holder names the address its followers reach it at.
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		mopts.LeaderElectionResourceLockInterface = &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: k.leaseNamespaceOrDefault(), Name: k.leaseName},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: k.leaseIdentity()},
		}
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("controller manager: %w", err)
	}
	if err := controllers.Setup(mgr, opts); err != nil {
		return nil, err
	}
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

// kubeSource runs the controllers for the control plane (controlplane.Kubernetes).
type kubeSource struct {
	o   *kubeOptions
	log *slog.Logger
}

func (k *kubeSource) Start(ctx context.Context, wg *sync.WaitGroup, opts controllers.Options) (client.Reader, string, error) {
	m, err := k.o.startManager(ctx, wg, k.log, opts)
	if err != nil {
		return nil, "", err
	}
	return m.GetAPIReader(), k.o.namespace, nil
}

package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/internal/leakcheck"
	"github.com/rocketpilot/rocketpilot/internal/testutil"
	nsclient "github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/cache"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/server/servertest"
)

// The Kubernetes suites run against a real kube-apiserver and etcd (envtest), started on first use by apiServer
// so that tests and fuzz targets that need none do not pay for it. hack/envtest-assets.sh builds the binaries once
// per machine from the Go module proxy; make test exports KUBEBUILDER_ASSETS, and a plain go test asks the script.
var (
	scheme = runtime.NewScheme()

	envOnce    sync.Once
	env        *envtest.Environment
	envErr     error
	restConfig *rest.Config
	k8s        client.Client // an admin client for the tests themselves
)

func TestMain(m *testing.M) {
	log.SetLogger(logr.Discard())
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	leakcheck.MainAfter(m, func() {
		if env != nil && envErr == nil {
			if err := env.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stop envtest:", err)
			}
		}
	})
}

// apiServer starts envtest once for the test binary and fails the test if it cannot.
func apiServer(t testing.TB) {
	t.Helper()
	envOnce.Do(func() {
		if env, envErr = kubetest.Start(filepath.Join("testdata", "crds")); envErr != nil {
			return
		}
		restConfig = env.Config
		k8s, envErr = client.New(restConfig, client.Options{Scheme: scheme})
	})
	if envErr != nil {
		t.Fatalf("envtest: %v", envErr)
	}
}

// plane is one rocketpilot replica against the envtest API server: its own routing table fed by the
// reconcilers, and its own xDS server.
type plane struct {
	id      string
	table   *routing.Table
	sources *Sources
	addr    string // xDS
	cache   *cache.Cache
	mgr     ctrl.Manager
	leader  atomic.Bool
	stop    func() // stops the replica (its manager releases the lease)
}

var leaseIDs atomic.Int64

// startPlane starts a replica. Replicas given the same lease compete for leadership; "" takes a lease of its own.
func startPlane(t *testing.T, id, lease string) *plane {
	t.Helper()
	apiServer(t)
	if lease == "" {
		lease = fmt.Sprintf("rocketpilot-test-%d", leaseIDs.Add(1))
	}
	table := routing.NewTable()
	sources := NewSources(table, watcher.Options{
		BrokerInterval: 100 * time.Millisecond, RateLimit: 1e6, Concurrency: 32, RemoveAfter: time.Nanosecond,
		Client: nsclient.Options{RequestTimeout: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
	}, nil)
	// A renewal may miss its deadline on a busy 2-core machine under -race (a 1 s deadline lost the lease for
	// replica-b once, the whole suite running): 3 s. Takeover does not wait for it: a stopped replica releases
	// its lease.
	leaseDuration, renew, retry := 4*time.Second, 3*time.Second, 100*time.Millisecond
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              lease,
		LeaderElectionNamespace:       "default",
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renew,
		RetryPeriod:                   &retry,
		Client:                        client.Options{FieldOwner: id},
		Controller:                    config.Controller{SkipNameValidation: ptr.To(true)}, // several managers in one process
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &plane{id: id, table: table, sources: sources, mgr: mgr}
	xds := servertest.Start(t, server.StackConfig{Table: table, Cache: cache.Options{NackBackoff: 100 * time.Millisecond}})
	p.cache, p.addr = xds.Cache(), xds.Addr()
	if err := Setup(mgr, Options{Table: table, Sources: sources, Policies: NewPolicies(table), Resync: time.Second, Rejections: p.cache}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("%s: manager: %v", id, err)
		}
	})
	wg.Go(func() {
		select {
		case <-mgr.Elected():
			p.leader.Store(true)
		case <-ctx.Done():
		}
	})
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			xds.Stop()
			sources.Close()
		})
	}
	t.Cleanup(p.stop)
	return p
}

// demoNameServer starts the embedded NameServer with the demo data set.
func demoNameServer(t *testing.T) *embedded.NameServer { t.Helper(); return embeddedtest.StartDemo(t) }

var namespaces atomic.Int64

// namespace creates a namespace of the test's own.
func namespace(t *testing.T) string {
	t.Helper()
	apiServer(t)
	name := fmt.Sprintf("t%d-%s", namespaces.Add(1), strings.ToLower(strings.TrimPrefix(t.Name(), "Test")))
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.Trim(strings.ReplaceAll(name, "/", "-"), "-")
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: objectMeta("", name)}); err != nil {
		t.Fatal(err)
	}
	return name
}

// eventually polls cond until it holds, failing the test after 30 s with what it last reported.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, what, cond)
}

func objectMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

// Package kubetest starts a real kube-apiserver and etcd (controller-runtime's envtest) with rocketpilot's CRDs,
// for the tests of other packages. The binaries come from hack/envtest-assets.sh, which builds them from the Go
// module proxy once per machine; KUBEBUILDER_ASSETS, when set, names them directly. Only tests import it.
package kubetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
)

// Start starts an API server with rocketpilot's CRDs and those of extraCRDDirs (relative to the caller's
// directory, as go test runs it). Stop it with Stop.
func Start(extraCRDDirs ...string) (*envtest.Environment, error) {
	env, err := newEnvironment(extraCRDDirs)
	if err != nil {
		return nil, err
	}
	return env, start(env)
}

func newEnvironment(extraCRDDirs []string) (*envtest.Environment, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		out, err := exec.Command(filepath.Join(root, "hack", "envtest-assets.sh")).Output()
		if err != nil {
			return nil, fmt.Errorf("envtest assets (hack/envtest-assets.sh): %w", err)
		}
		assets = strings.TrimSpace(string(out))
	}
	return &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join(root, "crds", "manifests")}, extraCRDDirs...),
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}, nil
}

func start(env *envtest.Environment) error {
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("start envtest: %w", err)
	}
	return nil
}

// StartT is Start for one test: it fails the test if the API server cannot start and stops it at cleanup.
func StartT(t testing.TB, extraCRDDirs ...string) *envtest.Environment {
	t.Helper()
	env, err := Start(extraCRDDirs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	return env
}

// StartRestartableT is StartT with an API server that can be stopped and started again while etcd keeps running
// (env.ControlPlane.APIServer.Stop, then Start). Its certificates live in a directory of the test's rather than
// one envtest creates and removes on Stop, so a restart serves the same address (the port chosen at the first
// start is kept) with the same serving certificate and client CA: clients made before the restart, env.Config's
// included, keep working. Open watches are given 1 s to drain when it stops: with the default (0) a
// kube-apiserver with watching clients outlasts envtest's 20 s stop timeout and is killed.
func StartRestartableT(t testing.TB, extraCRDDirs ...string) *envtest.Environment {
	t.Helper()
	certs := t.TempDir() // removed after the API server stops: cleanups run last-registered first
	env, err := newEnvironment(extraCRDDirs)
	if err != nil {
		t.Fatal(err)
	}
	env.ControlPlane.APIServer = &envtest.APIServer{CertDir: certs}
	env.ControlPlane.APIServer.Configure().Set("shutdown-watch-termination-grace-period", "1s")
	if err := start(env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	return env
}

// Kubeconfig writes a kubeconfig for the API server into the test's temporary directory and returns its path.
func Kubeconfig(t testing.TB, env *envtest.Environment) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// RepoRoot is the directory of rocketpilot's go.mod, above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/rocketpilot/rocketpilot\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the rocketpilot module")
		}
		dir = parent
	}
}

// Client returns a client of the API server whose scheme knows the built-in kinds and rocketpilot's.
func Client(t testing.TB, env *envtest.Environment) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

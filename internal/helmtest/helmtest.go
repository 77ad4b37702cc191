// Package helmtest renders and lints the Helm chart charts/rocketpilot with a real helm binary, for the tests of
// other packages. The binary is $HELM when set, otherwise the one hack/helm.sh prints (it builds helm from the Go
// module proxy once per machine). Only tests import it.
package helmtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/rocketpilot/rocketpilot/internal/kubetest"
)

// Release and Namespace are the release name and namespace every render uses.
const (
	Release   = "rocketpilot"
	Namespace = "rocketpilot-system"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// Helm returns the path of the helm binary: $HELM, or what hack/helm.sh prints.
func Helm(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		if p := os.Getenv("HELM"); p != "" {
			helmPath = p
			return
		}
		root, err := kubetest.RepoRoot()
		if err != nil {
			helmErr = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "hack", "helm.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmErr = fmt.Errorf("hack/helm.sh: %w\n%s", err, stderr.String())
			return
		}
		helmPath = strings.TrimSpace(string(out))
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

// ChartDir is the chart's directory.
func ChartDir(t testing.TB) string {
	t.Helper()
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "charts", "rocketpilot")
}

// run runs helm with args in the chart's directory (so that values files such as ci/ha-values.yaml resolve),
// with its configuration, cache and data homes in a temporary directory.
func run(t testing.TB, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(Helm(t), args...)
	cmd.Dir = ChartDir(t)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func valuesArgs(valuesFiles []string) []string {
	var args []string
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return args
}

// Template runs `helm template` for the chart as release Release in Namespace, with extra arguments (--values,
// --set, ...), and returns the documents it renders, or helm's error with its output.
func Template(t testing.TB, args ...string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	out, err := run(t, append([]string{"template", Release, ".", "--namespace", Namespace}, args...)...)
	if err != nil {
		return nil, err
	}
	return Parse(strings.NewReader(out))
}

// Render is Template with values files (relative to the chart's directory, or absolute), failing the test when
// helm fails.
func Render(t testing.TB, valuesFiles ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Template(t, valuesArgs(valuesFiles)...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// Lint runs `helm lint --strict` for the chart with values files, failing the test when it reports a problem.
func Lint(t testing.TB, valuesFiles ...string) string {
	t.Helper()
	out, err := run(t, append([]string{"lint", "--strict", "--namespace", Namespace, "."}, valuesArgs(valuesFiles)...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CRDs parses the chart's crds/ folder, which helm installs before the templates.
func CRDs(t testing.TB) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(ChartDir(t), "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, objs...)
	}
	return out
}

// Parse splits a YAML stream into objects, skipping empty documents; a document without apiVersion or kind is
// an error.
func Parse(r io.Reader) ([]*unstructured.Unstructured, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []*unstructured.Unstructured
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var obj map[string]any
		if err := utilyaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("%w in\n%s", err, doc)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return nil, fmt.Errorf("a document without apiVersion or kind:\n%s", doc)
		}
		out = append(out, u)
	}
}

// Find returns the object of that kind and name, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// OfKind returns the objects of the given kinds, in order.
func OfKind(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if slices.Contains(kinds, o.GetKind()) {
			out = append(out, o)
		}
	}
	return out
}

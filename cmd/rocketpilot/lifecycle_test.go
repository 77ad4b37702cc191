package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestGracefulShutdown: on the signal, readiness fails at once while streams are still answered for
// --shutdown-delay; then the streams end cleanly (not cut), and serve returns.
func TestGracefulShutdown(t *testing.T) {
	p := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--shutdown-delay", "1s")
	xdsAddr, admin := p.addr(t, "serving xDS", 10*time.Second), p.addr(t, "serving the admin API", time.Second)
	if code := status(t, "http://"+admin+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz while serving: %d", code)
	}
	st := deltaStream(t, xdsAddr, 10*time.Second)
	ask := func(topic string) error {
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "draining"}, TypeUrl: translate.RouteType,
			ResourceNamesSubscribe: []string{topic}}); err != nil {
			return err
		}
		resp, err := st.Recv()
		if err == nil && (len(resp.Resources) != 1 || resp.Resources[0].Name != topic) {
			err = errors.New("unexpected response")
		}
		return err
	}
	if err := ask(embedded.DemoTopic); err != nil {
		t.Fatal(err)
	}

	signalled := time.Now()
	p.cancel() // as SIGTERM does
	p.waitLog(t, "shutting down: readiness off, still serving", time.Second)
	if code := status(t, "http://"+admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the shutdown delay: %d, want 503", code)
	}
	if err := ask("demo-orders-001"); err != nil {
		t.Errorf("a stream during the shutdown delay: %v", err)
	}
	_, err := st.Recv() // the end of the stream
	if !errors.Is(err, io.EOF) {
		t.Errorf("the stream ended with %v, want a clean end (io.EOF)", err)
	}
	if waited := time.Since(signalled); waited < time.Second {
		t.Errorf("the stream ended %v after the signal, before --shutdown-delay", waited)
	}
	select {
	case <-p.stopped:
		if p.err != nil {
			t.Fatalf("serve: %v", p.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after the shutdown delay")
	}
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFlagSources: flag values come from the command line, then ROCKETPILOT_* variables, then --flags-file.
func TestFlagSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "flags.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	newFlags := func() *pflag.FlagSet {
		fs := newServeCommand().Flags()
		fs.Set("flags-file", file)
		return fs
	}
	write("poll-interval: 5s\ntopics: [a, b]\nlog-level: warn\ndiscovery: in-use\nframe-limit: 16777216\npoll-rate-limit: 2.5\n")
	fs := newFlags()
	if err := fs.Parse([]string{"--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	// Kubernetes' service links for a Service named rocketpilot are not flags, and not typos either.
	env := []string{"ROCKETPILOT_DISCOVERY=all", "PATH=/bin", "ROCKETPILOTX=1", "ROCKETPILOT_SERVICE_HOST=10.0.0.1",
		"ROCKETPILOT_SERVICE_PORT_XDS_GRPC=18000", "ROCKETPILOT_PORT=tcp://10.0.0.1:18000", "ROCKETPILOT_PORT_18000_TCP_ADDR=10.0.0.1"}
	if err := applyFlagSources(fs, "flags-file", env); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"poll-interval":   "5s",     // from the file
		"topics":          "[a,b]",  // a list, from the file
		"log-level":       "debug",  // the command line beats the file
		"discovery":       "all",    // the environment beats the file
		"xds-address":     ":18000", // nobody set it
		"frame-limit":     "16777216",
		"poll-rate-limit": "2.5",
	} {
		if got := fs.Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}

	for _, c := range []struct {
		file string
		env  []string
		want string
	}{
		{"pol-interval: 5s\n", nil, `"pol-interval" is not a flag`},
		{"poll-interval: soon\n", nil, "poll-interval"},
		{"flags-file: other.yaml\n", nil, `"flags-file" is not a flag`},
		{"[not, a, mapping]\n", nil, "flags.yaml"},
		{"log-level: {a: b}\n", nil, "want a value"},
		{"topics: [[a]]\n", nil, "want a value"},
		{"", []string{"ROCKETPILOT_POL_INTERVAL=5s"}, "ROCKETPILOT_POL_INTERVAL names no flag"},
	} {
		write(c.file)
		fs := newFlags()
		if err := applyFlagSources(fs, "flags-file", c.env); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("file %q, env %v: err = %v, want it to mention %q", c.file, c.env, err, c.want)
		}
	}
}

// TestServeFromFlagsFileAndEnvironment runs serve configured by a flags file and the environment alone.
func TestServeFromFlagsFileAndEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "flags.yaml")
	if err := os.WriteFile(file, []byte("demo: true\ndemo-namesrv-address: 127.0.0.1:0\nlog-level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ROCKETPILOT_FLAGS_FILE", file)
	t.Setenv("ROCKETPILOT_COALESCE_WINDOW", "5ms")
	p := serveInProcess(t)
	out := p.waitLog(t, "serving xDS", 10*time.Second)
	if !strings.Contains(out, `"level":"DEBUG"`) {
		t.Errorf("log-level debug from the flags file: no debug line in\n%s", out)
	}
}

// FuzzFlagsFile: any --flags-file content is either rejected with an error or sets only flags it names, each to a
// value the flag accepted; it never panics.
func FuzzFlagsFile(f *testing.F) {
	for _, seed := range []string{"poll-interval: 5s\ntopics: [a, b]\n", "demo: true\n", "log-level: [1, 2]\n", "{}", "- a\n", "x: {y: z}\n", ": :\n"} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(dir, "flags.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := newServeCommand().Flags()
		fs.Set("flags-file", file)
		if err := applyFlagSources(fs, "flags-file", nil); err != nil {
			return
		}
		var named map[string]any
		if err := yaml.Unmarshal(data, &named); err != nil {
			t.Fatalf("accepted a file that is not a mapping: %v\n%s", err, data)
		}
		fs.Visit(func(fl *pflag.Flag) {
			if _, ok := named[fl.Name]; !ok && fl.Name != "flags-file" {
				t.Errorf("--%s set, but the file does not name it:\n%s", fl.Name, data)
			}
		})
	})
}

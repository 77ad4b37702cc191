package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/internal/testutil"
)

// syncBuffer collects a logger's output (testutil.LogBuffer).
type syncBuffer = testutil.LogBuffer

// inProcess is `rocketpilot serve` run in process, on loopback ports of its own, with JSON logs; it is stopped
// when the test ends.
type inProcess struct {
	logs    syncBuffer
	cancel  context.CancelFunc
	stopped chan struct{}
	err     error // what serve returned, once stopped is closed
}

func serveInProcess(t *testing.T, args ...string) *inProcess {
	t.Helper()
	p := &inProcess{stopped: make(chan struct{})}
	root := newRootCommand()
	// Loopback ports the system picks, unless the test gives its own.
	full := append([]string{"serve"}, args...)
	for _, flag := range []string{"--xds-address", "--admin-address"} {
		if !slices.Contains(args, flag) {
			full = append(full, flag, "127.0.0.1:0")
		}
	}
	root.SetArgs(append(full, "--log-format", "json"))
	root.SetErr(&p.logs)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.err = root.ExecuteContext(ctx); close(p.stopped) }()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends serve and returns what it returned, or an error when it does not stop within 5 s.
func (p *inProcess) stop() error {
	p.cancel()
	select {
	case <-p.stopped:
		return p.err
	case <-time.After(5 * time.Second):
		return errors.New("serve did not stop within 5 s after its context ended")
	}
}

// waitLog waits until a log line with msg appears, and returns the logs so far.
func (p *inProcess) waitLog(t *testing.T, msg string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if out := p.logs.String(); strings.Contains(out, `"msg":"`+msg+`"`) {
			return out
		}
		select {
		case <-p.stopped:
			t.Fatalf("serve stopped (%v) before %q; logs:\n%s", p.err, msg, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; logs:\n%s", msg, within, p.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// addr waits for the log line msg and returns the address it names.
func (p *inProcess) addr(t *testing.T, msg string, within time.Duration) string {
	t.Helper()
	m := regexp.MustCompile(`"msg":"` + regexp.QuoteMeta(msg) + `","addr":"([^"]+)"`).FindStringSubmatch(p.waitLog(t, msg, within))
	if m == nil {
		t.Fatalf("the %q log line names no address", msg)
	}
	return m[1]
}

// TestServeDemo runs `rocketpilot serve --demo` in process and checks that it learns and logs the demo topics.
func TestServeDemo(t *testing.T) {
	p := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	out := p.waitLog(t, "routing model ready", 10*time.Second)
	if n := strings.Count(out, `"msg":"topic learned"`); n < 100 {
		t.Fatalf("logged %d learned topics, want at least 100", n)
	}
	if !strings.Contains(out, `"topic":"TopicTest","brokers":"broker-a(DefaultCluster,RW-) broker-b(DefaultCluster,RW-)"`) {
		t.Fatalf("TopicTest not logged with its two broker groups:\n%s", out)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func TestServeNeedsASource(t *testing.T) {
	root := newRootCommand()
	root.SetArgs([]string{"serve"})
	root.SetErr(&bytes.Buffer{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "give --namesrv, --demo, --kubernetes or --config") {
		t.Fatalf("serve without a source: err = %v", err)
	}
}

func TestServeRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--demo", "--discovery", "sometimes", "--demo-namesrv-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0", "--admin-address", ""},
		{"serve", "--demo", "--log-level", "loud"},
		{"serve", "--kubernetes", "--config", "."},
		{"serve", "--demo", "--tls-reload-interval", "0", "--demo-namesrv-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0", "--admin-address", ""},
		{"serve", "--demo", "--xds-compression", "brotli", "--demo-namesrv-address", "127.0.0.1:0", "--xds-address", "127.0.0.1:0", "--admin-address", ""},
	} {
		root := newRootCommand()
		root.SetArgs(args)
		root.SetErr(&bytes.Buffer{})
		if err := root.Execute(); err == nil {
			t.Fatalf("%v accepted", args)
		}
	}
}

// TestServeValidatesEveryFlagBeforeStarting: a bad value is refused by the one validation, naming its flag, before
// anything starts (an xDS address no listener can take would otherwise fail first).
func TestServeValidatesEveryFlagBeforeStarting(t *testing.T) {
	for flag, value := range map[string]string{
		"--discovery": "sometimes", "--xds-compression": "brotli", "--xds-stream-rate": "0", "--xds-max-subscriptions": "0",
		"--nack-backoff": "0s", "--transient-object-life-span": "0s", "--tls-reload-interval": "0s",
		"--demo-broker-groups": "0", "--demo-queues": "-1", "--demo-queue-capacity": "0",
		"--namesrv": "127.0.0.1", "--log-level": "verbose",
	} {
		root := newRootCommand()
		root.SetArgs([]string{"serve", "--demo", "--xds-address", "not an address", "--admin-address", "", flag, value})
		root.SetErr(&bytes.Buffer{})
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("serve %s %s: err = %v, want one naming %s", flag, value, err, flag)
		}
	}
}

// TestServeRefusesNameServersItCouldNeverDial: --namesrv takes host:port with a port from 1 to 65535, as the
// NameServerSource schema does; the error says what is wrong. --log-level's error lists the levels.
func TestServeRefusesNameServersItCouldNeverDial(t *testing.T) {
	for value, want := range map[string]string{
		"127.0.0.1":                 "missing port",
		"localhost:abc":             `port "abc" is not a number from 1 to 65535`,
		"127.0.0.1:9876;host:70000": `port "70000"`,
		":9876":                     "the host is empty",
	} {
		root := newRootCommand()
		root.SetArgs([]string{"serve", "--namesrv", value, "--admin-address", ""})
		root.SetErr(&bytes.Buffer{})
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--namesrv") {
			t.Errorf("serve --namesrv %q: err = %v, want one naming --namesrv and saying %q", value, err, want)
		}
	}
	root := newRootCommand()
	root.SetArgs([]string{"serve", "--demo", "--log-level", "verbose", "--admin-address", ""})
	root.SetErr(&bytes.Buffer{})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "want debug, info, warn or error") {
		t.Errorf("serve --log-level verbose: err = %v, want the valid levels", err)
	}
}

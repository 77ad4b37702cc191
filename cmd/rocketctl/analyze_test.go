package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/analyze"
)

const analyzeData = "testdata/analyze"

// runAnalyze runs rocketctl analyze with args, as run does, and returns its output, its problems (read back from
// -o json) and its exit code.
func runAnalyze(t *testing.T, server string, args ...string) (table string, problems []analyze.Problem, code int) {
	t.Helper()
	exec := func(args ...string) (string, int) {
		var out, errOut bytes.Buffer
		g := &globals{server: server, timeout: 10 * time.Second, out: &out, errOut: &errOut}
		cmd := newAnalyzeCommand(g)
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.ExecuteContext(context.Background())
		var ex exitError
		switch {
		case errors.As(err, &ex):
			return out.String(), ex.code
		case err != nil:
			t.Fatalf("analyze %v: %v\n%s", args, err, errOut.String())
		}
		return out.String(), 0
	}
	table, code = exec(args...)
	js, jcode := exec(append(args, "-o", "json")...)
	if jcode != code {
		t.Fatalf("analyze %v: exit %d, with -o json %d", args, code, jcode)
	}
	if err := json.Unmarshal([]byte(js), &problems); err != nil {
		t.Fatalf("analyze %v -o json: %v\n%s", args, err, js)
	}
	return table, problems, code
}

// find returns the problems of an object (kind/namespace/name) and field.
func find(problems []analyze.Problem, object, field string) []analyze.Problem {
	var out []analyze.Problem
	for _, p := range problems {
		if p.Object() == object && p.Field == field {
			out = append(out, p)
		}
	}
	return out
}

// want fails unless exactly one problem of object and field has the severity and a message containing each of
// msgs.
func want(t *testing.T, problems []analyze.Problem, sev analyze.Severity, object, field string, msgs ...string) {
	t.Helper()
	got := find(problems, object, field)
	if len(got) != 1 || got[0].Severity != sev {
		t.Fatalf("want one %s on %s %s, got %+v among\n%s", sev, object, field, got, dumpProblems(problems))
	}
	for _, m := range msgs {
		if !strings.Contains(got[0].Message, m) {
			t.Errorf("%s %s: message %q lacks %q", object, field, got[0].Message, m)
		}
	}
	if got[0].Fix == "" {
		t.Errorf("%s %s: no fix", object, field)
	}
}

func dumpProblems(ps []analyze.Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", p.Severity, p.Object(), p.Field, p.Message)
	}
	return b.String()
}

func dump() string { return filepath.Join(analyzeData, "namesrv.json") }

// sourceYAML is a NameServerSource document of addrs.
func sourceYAML(namespace, name string, addrs ...string) string {
	return fmt.Sprintf("apiVersion: rocketpilot.io/v1alpha1\nkind: NameServerSource\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  addresses: [%s]\n",
		name, namespace, strings.Join(quoteEach(addrs), ", "))
}

func quoteEach(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// closedPort returns a loopback address nothing listens on (one that was just closed).
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestAnalyzeOfflineDrainLeavesNoWritableBroker(t *testing.T) {
	table, ps, code := runAnalyze(t, "", "-f", filepath.Join(analyzeData, "drain"), "--namesrv-dump", dump())
	want(t, ps, analyze.Error, "TopicRoute/default/drain-b", "spec.drain.brokerNames[0]",
		"draining broker-b leaves 2 topics with no writable broker group", `"drain-1", "drain-2"`)
	if len(ps) != 1 {
		t.Errorf("want only the drain's error (drain-3 keeps broker-a), got\n%s", dumpProblems(ps))
	}
	if code != 1 {
		t.Errorf("exit %d with an error, want 1", code)
	}
	if !strings.HasPrefix(table, "SEVERITY   OBJECT                       FIELD                       MESSAGE\nError      TopicRoute/default/drain-b   spec.drain.brokerNames[0]   draining broker-b") {
		t.Errorf("table:\n%s", table)
	}
}

func TestAnalyzeOfflineConflict(t *testing.T) {
	dir := filepath.Join(analyzeData, "conflict")
	_, ps, code := runAnalyze(t, "", "-f", dir, "--namesrv-dump", dump())
	want(t, ps, analyze.Warning, "TopicRoute/default/b-orders-1", "spec.topics",
		"1 topic it matches follows TopicRoute default/a-orders instead", `"orders-1"`)
	if code != 0 {
		t.Errorf("exit %d with warnings only, want 0", code)
	}
	// Without a dump, from the exact names alone.
	_, ps, _ = runAnalyze(t, "", "-f", dir)
	want(t, ps, analyze.Warning, "TopicRoute/default/b-orders-1", "spec.topics.exact[0]",
		`topic "orders-1" follows TopicRoute default/a-orders`)
}

func TestAnalyzeOfflineWeightsToNoWritableMaster(t *testing.T) {
	_, ps, code := runAnalyze(t, "", "-f", filepath.Join(analyzeData, "weights"), "--namesrv-dump", dump())
	want(t, ps, analyze.Warning, "TopicRoute/shop/split", "spec.send.backends[1]",
		"weight 50 goes to brokerCluster OtherCluster, which has no writable master for 1 topic", "broker-c")
	if len(find(ps, "TopicRoute/shop/split", "spec.send.backends[0]")) != 0 || code != 0 {
		t.Errorf("exit %d, problems:\n%s", code, dumpProblems(ps))
	}
}

func TestAnalyzeOfflineBindingUnknownTopic(t *testing.T) {
	_, ps, _ := runAnalyze(t, "", "-f", filepath.Join(analyzeData, "binding"), "--namesrv-dump", dump())
	want(t, ps, analyze.Warning, "TopicBinding/default/orders", "spec.topics[1]", `topic "no-such-topic" is unknown`)
	if len(ps) != 1 { // offline, proxies are unknown: no "selects nothing"
		t.Errorf("problems:\n%s", dumpProblems(ps))
	}
}

func TestAnalyzeOfflineRejectedDocuments(t *testing.T) {
	_, ps, code := runAnalyze(t, "", "-f", filepath.Join(analyzeData, "rejected"))
	want(t, ps, analyze.Error, "TopicRoute/default/weighted-consume", "spec", "weights apply to send only")
	want(t, ps, analyze.Error, "TopicRoute/default/typo", "spec.drainage", "unknown field")
	want(t, ps, analyze.Error, "File/broken.yaml", "")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}

// TestAnalyzeOfflineDial: an address something listens on passes, a closed port is an error, within the timeout.
func TestAnalyzeOfflineDial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	closedAddr := closedPort(t)
	dir := t.TempDir()
	doc := sourceYAML("shop", "prod", l.Addr().String(), closedAddr)
	if err := os.WriteFile(filepath.Join(dir, "nss.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, ps, code := runAnalyze(t, "", "-f", dir, "--dial-timeout", "500ms")
	want(t, ps, analyze.Error, "NameServerSource/shop/prod", "spec.addresses[1]", "nothing answers on "+closedAddr)
	if len(ps) != 1 || code != 1 {
		t.Errorf("exit %d, problems:\n%s", code, dumpProblems(ps))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestAnalyzeOfflineClean(t *testing.T) {
	table, ps, code := runAnalyze(t, "", "-f", t.TempDir())
	if len(ps) != 0 || code != 0 || table != "No problems found.\n" {
		t.Errorf("exit %d, output %q, problems:\n%s", code, table, dumpProblems(ps))
	}
}

// TestAnalyzeLive runs serve --demo --config with resources that hold every live problem, and analyzes it through
// the admin API.
func TestAnalyzeLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts rocketpilot")
	}
	closedAddr := closedPort(t)
	dir := t.TempDir()
	resources := sourceYAML("default", "gone", closedAddr) + `  pollInterval: 1s
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata:
  name: a-drain-all
spec:
  topics:
    exact: [TopicTest]
  drain:
    brokerNames: [broker-a, broker-b]
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicRoute
metadata:
  name: b-topics
spec:
  topics:
    prefix: [Topic]
  consume:
    backends:
      - brokerNames: [broker-a]
---
apiVersion: rocketpilot.io/v1alpha1
kind: TopicBinding
metadata:
  name: nobody
spec:
  nodeIDs: ["nobody-*"]
  topics: [TopicTest, no-such-topic]
`
	if err := os.WriteFile(filepath.Join(dir, "resources.yaml"), []byte(resources), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: rocketpilot.io/v1alpha1\nkind: TopicRoute\nmetadata:\n  name: bad\nspec: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--config", dir, "--initial-sync-timeout", "1s")
	var ps []analyze.Problem
	var code int
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, ps, code = runAnalyze(t, s.admin)
		if len(find(ps, "NameServerSource/default/gone", "spec.addresses[0]")) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	want(t, ps, analyze.Warning, "NameServerSource/default/gone", "spec.addresses[0]", "NameServer "+closedAddr+" does not answer")
	want(t, ps, analyze.Error, "NameServerSource/default/gone", "", "none of its 1 NameServer answers")
	want(t, ps, analyze.Error, "TopicRoute/default/a-drain-all", "spec.drain.brokerNames[0]", "leaves 1 topic with no writable broker group", `"TopicTest"`)
	want(t, ps, analyze.Warning, "TopicRoute/default/b-topics", "spec.topics", "TopicRoute default/a-drain-all instead")
	want(t, ps, analyze.Warning, "TopicBinding/default/nobody", "spec", "selects no connected proxy")
	want(t, ps, analyze.Warning, "TopicBinding/default/nobody", "spec.topics[1]", `"no-such-topic"`)
	want(t, ps, analyze.Error, "TopicRoute/default/bad", "spec.topics")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}

// TestAnalyzeCommandLine runs analyze as the binary does, through run: exit 1 and the count of errors on stderr.
func TestAnalyzeCommandLine(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"rocketctl", "analyze", "-f", filepath.Join(analyzeData, "rejected")}, &out, &errOut)
	if code != 1 || !strings.HasPrefix(out.String(), "SEVERITY") || errOut.String() != "error: found 3 errors (and 0 other problems)\n" {
		t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/rocketpilot/rocketpilot/internal/embeddedtest"
)

// rocketctlAt runs one command line in process with --server at server, which need not be rocketpilot.
func rocketctlAt(server string, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"rocketctl", "--server", server, "--request-timeout", "5s"}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

// Command lines a command cannot take are errors with exit 1, naming what is wrong, and followed by the command's
// usage line, as kubectl does: an unknown flag before the command, an unknown subcommand (with a suggestion), a
// wrong number of arguments.
func TestUsageErrors(t *testing.T) {
	closed := "http://127.0.0.1:1" // never asked: each line fails before any request
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--bogus", "get", "topics"}, []string{"error: unknown flag: --bogus", "Usage: rocketctl"}},
		{[]string{"x", "transalte"}, []string{`error: unknown command "transalte" for "rocketctl x"; did you mean translate?`, "Usage: rocketctl x"}},
		{[]string{"describe"}, []string{"error: accepts between 1 and 2 arg(s), received 0", "Usage: rocketctl describe (topic NAME | proxy NODE |", "See 'rocketctl describe --help'"}},
		{[]string{"describe", "topic"}, []string{"error: describe topic needs the topic's name", "Usage: rocketctl describe"}},
		{[]string{"resolve"}, []string{"error: accepts 1 arg(s), received 0", "Usage: rocketctl resolve TOPIC"}},
		{[]string{"get", "topics", "--nope"}, []string{"error: unknown flag: --nope", "Usage: rocketctl get KIND"}},
	} {
		out, errOut, code := rocketctlAt(closed, c.args...)
		if code != 1 || out != "" {
			t.Errorf("rocketctl %v: exit %d, stdout %q; want exit 1 and nothing on stdout", c.args, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("rocketctl %v: stderr %q, want %q in it", c.args, errOut, w)
			}
		}
	}
}

// A topic name no topic can have is reported as invalid, with the rule it breaks, before any request: not as a
// topic not found, nor as the admin API's unknown path.
func TestDescribeInvalidTopicName(t *testing.T) {
	for name, want := range map[string]string{
		"":          "error: invalid RocketMQ name: the topic name is empty",
		"bad name!": `error: invalid RocketMQ name: topic "bad name!" has ' ' at byte 3`,
	} {
		_, errOut, code := rocketctlAt("http://127.0.0.1:1", "describe", "topic", name)
		if code != 1 || !strings.HasPrefix(errOut, want) {
			t.Errorf("describe topic %q: exit %d, stderr %q; want %q", name, code, errOut, want)
		}
	}
}

// A server that is not rocketpilot's admin API (a web server's HTML or empty 404, a 500, a 200 that is not JSON,
// rocketpilot's own xDS port) is named as such, with what was reached and what --server should be: never a raw
// body or a transport's binary noise.
func TestServerThatIsNotRocketpilot(t *testing.T) {
	handler := func(status int, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			w.Write([]byte(body))
		})
	}
	for name, c := range map[string]struct {
		h    http.Handler
		want string
	}{
		"HTML 404":   {handler(404, "<!DOCTYPE html>\n<html><head><title>Not Found</title></head><body>nope</body></html>"), `gave 404 Not Found with "<!DOCTYPE html> <html><head><title>Not Found</title>`},
		"empty 404":  {handler(404, ""), "gave 404 Not Found with an empty body"},
		"plain 500":  {handler(500, "upstream connect error\x00\x01"), `gave 500 Internal Server Error with "upstream connect error"`},
		"HTML 200":   {handler(200, "<html>welcome</html>"), `gave 200 OK with "<html>welcome</html>"`},
		"other JSON": {handler(404, `{"message":"no route"}`), `gave 404 Not Found with "{\"message\":\"no route\"}"`},
	} {
		srv := httptest.NewServer(c.h)
		_, errOut, code := rocketctlAt(srv.URL, "get", "topics")
		srv.Close()
		if code != 1 || !strings.Contains(errOut, "does not answer as rocketpilot's admin API: GET /api/v1/topics ") ||
			!strings.Contains(errOut, c.want) || !strings.Contains(errOut, "serve --admin-address") {
			t.Errorf("%s: exit %d, stderr %q; want it named as not rocketpilot's admin API, with %q", name, code, errOut, c.want)
		}
	}

	// A gRPC server, as rocketpilot's xDS port is.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	go gs.Serve(ln)
	defer gs.Stop()
	_, errOut, code := rocketctlAt(ln.Addr().String(), "get", "topics")
	if code != 1 || !strings.Contains(errOut, "is not rocketpilot's admin API: it does not answer HTTP/1.1") || strings.ContainsRune(errOut, 0) {
		t.Errorf("a gRPC port as --server: exit %d, stderr %q", code, errOut)
	}
}

// x translate reports every custom resource it rejects, as the server does, not only the first; a path that is
// not there is named.
func TestTranslateReportsEveryRejection(t *testing.T) {
	ns := embeddedtest.StartDemo(t)
	dump, err := dumpNameServer(context.Background(), ns.Addr(), 4, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dumpFile := filepath.Join(dir, "namesrv.json")
	b, _ := json.Marshal(dump)
	bad := filepath.Join(dir, "bad")
	for name, body := range map[string]string{
		"dump":   string(b),
		"a.yaml": "apiVersion: rocketpilot.io/v1alpha1\nkind: TopicRoute\nmetadata: {name: a}\nspec: {topics: {}}\n",
		"b.yaml": "apiVersion: rocketpilot.io/v1alpha1\nkind: TopicRoute\nmetadata: {name: b}\nspec: {bogus: 1, topics: {exact: [x]}}\n",
	} {
		path := filepath.Join(bad, name)
		if name == "dump" {
			path = dumpFile
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errOut, code := rocketctlAt("http://127.0.0.1:1", "x", "translate", "--namesrv-dump", dumpFile, "-f", bad)
	for _, want := range []string{"error: 2 custom resources rejected", "a.yaml: TopicRoute a:", "topics must give at least one of exact, prefix and regex",
		"b.yaml: TopicRoute b:", "spec.bogus"} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("x translate -f a directory of 2 bad resources: exit %d, stderr %q; want %q", code, errOut, want)
		}
	}
	// Files named one by one are reported by the paths given, not by the copies translate reads.
	_, errOut, code = rocketctlAt("http://127.0.0.1:1", "x", "translate", "--namesrv-dump", dumpFile, "-f", filepath.Join(bad, "a.yaml"),
		"-f", filepath.Join(bad, "b.yaml"))
	if code != 1 || !strings.Contains(errOut, filepath.Join(bad, "a.yaml")+": TopicRoute a:") || !strings.Contains(errOut, filepath.Join(bad, "b.yaml")+": TopicRoute b:") {
		t.Errorf("x translate -f FILE -f FILE: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = rocketctlAt("http://127.0.0.1:1", "x", "translate", "--namesrv-dump", dumpFile, "-f", dumpFile)
	if code != 1 || !strings.Contains(errOut, "not a .yaml or .yml file") {
		t.Errorf("x translate -f a JSON file: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = rocketctlAt("http://127.0.0.1:1", "x", "translate", "--namesrv-dump", dumpFile, "-f", filepath.Join(dir, "nope.yaml"))
	if code != 1 || !strings.Contains(errOut, "-f "+filepath.Join(dir, "nope.yaml")) || strings.Contains(errOut, "<nil>") {
		t.Errorf("x translate -f a missing file: exit %d, stderr %q", code, errOut)
	}
}

// A control plane whose first sync is not done (its one NameServer does not answer) serves no xDS: version, /readyz,
// describe and resolve say so, and what it waits for, at once (resolve used to wait out its timeout and blame the
// address).
func TestUnsyncedServerSaysWhatItWaitsFor(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close() // nothing listens there now
	addrs := startLogged(t, []string{"serve", "--namesrv", deadAddr, "--xds-address", "127.0.0.1:0", "--admin-address",
		"127.0.0.1:0", "--log-format", "json"}, "serving the admin API")
	admin := "http://" + addrs["serving the admin API"]
	waits := "NameServer source namesrv: " + deadAddr
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, errOut, code := rocketctlAt(admin, "version")
		if code == 0 && strings.Contains(out, "Server: ") && strings.Contains(errOut, "The server is not serving xDS yet; it waits for "+waits) &&
			strings.Contains(errOut, "connection refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("version against an unsynced server: exit %d\n%s%s", code, out, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "waiting for "+waits) {
		t.Errorf("/readyz: %d %q", resp.StatusCode, body)
	}
	out, errOut, code := rocketctlAt(admin, "get", "topics")
	if code != 0 || out != "" || errOut != "No resources found.\nThe server has not done its first sync: it waits for "+waits+
		" (GET_BROKER_CLUSTER_INFO to "+deadAddr+": dial tcp "+deadAddr+": connect: connection refused)\n" {
		t.Errorf("get topics on an unsynced server: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = rocketctlAt(admin, "describe", "topic", "TopicTest")
	if code != 1 || !strings.Contains(errOut, `topic "TopicTest" not found; the server has not done its first sync: it waits for `+waits) {
		t.Errorf("describe on an unsynced server: exit %d, %q", code, errOut)
	}
	start := time.Now()
	_, errOut, code = rocketctlAt(admin, "resolve", "TopicTest")
	if code != 1 || !strings.Contains(errOut, "serves no xDS yet: it waits for "+waits) || time.Since(start) > 3*time.Second {
		t.Errorf("resolve on an unsynced server: exit %d after %v, %q", code, time.Since(start).Round(time.Millisecond), errOut)
	}
}

// resolve needs only --server: the admin API names the xDS address.
func TestResolveFindsTheXDSServerFromTheAdminAPI(t *testing.T) {
	// Three broker groups: a server on the default xDS port (a demo left running) would not list broker-c.
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--demo-broker-groups", "3")
	out, errOut, code := rocketctlAt(s.admin, "resolve", "TopicTest") // no --xds-server: not the default port
	if code != 0 || !strings.Contains(out, `"brokerName": "broker-c"`) {
		t.Fatalf("resolve with --server only: exit %d, %s\n%s", code, errOut, out)
	}
}

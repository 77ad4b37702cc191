package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/remoting"
)

// nodeDir holds package.json, package-lock.json and route.js; setup.sh installs node_modules there.
const nodeDir = "node"

// nodeTimeout bounds one run of route.js, node start-up included (route.js gives up after 10 s itself).
const nodeTimeout = 30 * time.Second

// aliOnsVersionRequest is the request version ali-ons sends (MQ_VERSION in its remoting_command.js).
const aliOnsVersionRequest = 121

// aliOnsRoute is TopicRouteData as ali-ons parsed it and route.js printed it: broker ids are object keys.
type aliOnsRoute struct {
	QueueDatas []struct {
		BrokerName     string `json:"brokerName"`
		ReadQueueNums  int32  `json:"readQueueNums"`
		WriteQueueNums int32  `json:"writeQueueNums"`
		Perm           int32  `json:"perm"`
	} `json:"queueDatas"`
	BrokerDatas []struct {
		Cluster     string            `json:"cluster"`
		BrokerName  string            `json:"brokerName"`
		BrokerAddrs map[string]string `json:"brokerAddrs"`
	} `json:"brokerDatas"`
}

type aliOnsOutput struct {
	Route    *aliOnsRoute `json:"route"`
	Producer *struct {
		Publish   []aliOnsQueue `json:"publish"`
		Picks     []aliOnsQueue `json:"picks"`
		Subscribe []aliOnsQueue `json:"subscribe"`
	} `json:"producer"` // route.js --producer
	Error *struct {
		Name    string `json:"name"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// TestAliOnsFetchesRouteFromEmbeddedNameServer runs node/route.js, which fetches TopicTest's route with ali-ons'
// MQClientAPI.getTopicRouteInfoFromNameServer, against the embedded NameServer with the demo data set, through a
// spy that records the frames. ali-ons is a separate, pure-JavaScript implementation of the remoting protocol.
func TestAliOnsFetchesRouteFromEmbeddedNameServer(t *testing.T) {
	node := requireAliOns(t)
	ns := startNameServer(t, embedded.Options{}, true)
	sp := startSpy(t, ns.Addr())

	want := map[string]embedded.Broker{}
	for _, b := range embedded.DemoBrokers() {
		if b.Name == "broker-a" || b.Name == "broker-b" {
			want[b.Name] = b
		}
	}
	if len(want) != 2 {
		t.Fatalf("demo data set lacks broker-a or broker-b: %+v", embedded.DemoBrokers())
	}

	for _, tc := range []struct {
		name     string
		standard bool
	}{{"legacy fastjson", false}, {"standard JSON", true}} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(sp.roundTrips(remoting.GetRouteInfoByTopic, topicIs(embedded.DemoTopic)))
			var args []string
			if tc.standard {
				args = append(args, "--standard")
			}
			out := runRouteScript(t, node, sp.Addr(), embedded.DemoTopic, args...)
			if out.code != 0 || out.res.Route == nil {
				t.Fatalf("route.js exited %d, output %s\nstderr:\n%s", out.code, out.stdout, out.stderr)
			}
			r := out.res.Route

			if len(r.QueueDatas) != 2 {
				t.Fatalf("ali-ons parsed %d queue datas, want 2: %s", len(r.QueueDatas), out.stdout)
			}
			for i, name := range []string{"broker-a", "broker-b"} { // ali-ons sorts them by broker name
				q := r.QueueDatas[i]
				if q.BrokerName != name || q.ReadQueueNums != 4 || q.WriteQueueNums != 4 || q.Perm != remoting.PermRead|remoting.PermWrite {
					t.Errorf("queue data #%d = %+v, want %s with 4 read and 4 write queues, perm 6", i, q, name)
				}
			}
			if len(r.BrokerDatas) != 2 {
				t.Fatalf("ali-ons parsed %d broker datas, want 2: %s", len(r.BrokerDatas), out.stdout)
			}
			for i, name := range []string{"broker-a", "broker-b"} {
				bd, w := r.BrokerDatas[i], want[name]
				if bd.BrokerName != name || bd.Cluster != w.Cluster {
					t.Errorf("broker data #%d: %s in %s, want %s in %s", i, bd.BrokerName, bd.Cluster, name, w.Cluster)
				}
				if bd.BrokerAddrs["0"] != w.Addrs[0] || bd.BrokerAddrs["1"] != w.Addrs[1] || len(bd.BrokerAddrs) != 2 {
					t.Errorf("%s addresses %v, want master (0) %s and slave (1) %s", name, bd.BrokerAddrs, w.Addrs[0], w.Addrs[1])
				}
			}

			// What went over the wire.
			rts := sp.roundTrips(remoting.GetRouteInfoByTopic, topicIs(embedded.DemoTopic))[before:]
			if len(rts) != 1 || rts[0].resp == nil {
				t.Fatalf("spy saw %d 105 round trips for this run, want 1 answered: %+v", len(rts), rts)
			}
			req, resp := rts[0].req, rts[0].resp
			if req.Version != aliOnsVersionRequest {
				t.Errorf("ali-ons sent request version %d, want %d", req.Version, aliOnsVersionRequest)
			}
			if got := req.Ext("acceptStandardJsonOnly") == "true"; got != tc.standard {
				t.Errorf("acceptStandardJsonOnly in %v, want it set: %v", req.ExtFields, tc.standard)
			}
			if resp.Code != remoting.Success {
				t.Fatalf("105 answered %v, want SUCCESS", resp)
			}
			if tc.standard {
				if !bytes.Contains(resp.Body, []byte(`"brokerAddrs":{"0":"`)) {
					t.Errorf("105 body is not standard JSON with quoted broker-id keys:\n%s", resp.Body)
				}
				var decoded any
				if err := json.Unmarshal(resp.Body, &decoded); err != nil {
					t.Errorf("standard JSON body does not parse with encoding/json: %v", err)
				}
			} else {
				assertLegacyRouteBody(t, resp.Body)
			}
		})
	}

	t.Run("unknown topic", func(t *testing.T) {
		out := runRouteScript(t, node, sp.Addr(), "interop-no-such-topic")
		if out.code != 3 || out.res.Error == nil || out.res.Error.Code != int(remoting.TopicNotExist) {
			t.Fatalf("route.js exited %d with %s, want exit 3 and MQClientException code 17 (TOPIC_NOT_EXIST)\nstderr:\n%s",
				out.code, out.stdout, out.stderr)
		}
		if !strings.Contains(out.res.Error.Message, "No topic route info in name server for the topic: interop-no-such-topic") {
			t.Errorf("error message %q lacks the NameServer's remark", out.res.Error.Message)
		}
	})
}

type routeScriptOutput struct {
	code           int
	res            aliOnsOutput
	line           string // the result line res was decoded from
	stdout, stderr string
}

// runRouteScript runs `node route.js addr topic args...` in nodeDir within nodeTimeout.
func runRouteScript(t *testing.T, node, addr, topic string, args ...string) routeScriptOutput {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"route.js", addr, topic}, args...)...)
	cmd.Dir = nodeDir
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	out := routeScriptOutput{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("route.js did not finish within %v\nstdout:\n%s\nstderr:\n%s", nodeTimeout, out.stdout, out.stderr)
	case errors.As(err, &exit):
		out.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run route.js: %v", err)
	}
	t.Logf("node route.js %s %s %s: exit %d in %v", addr, topic, strings.Join(args, " "), out.code, time.Since(start).Round(time.Millisecond))
	lines := strings.Split(strings.TrimSpace(out.stdout), "\n")
	out.line = lines[len(lines)-1]
	if err := json.Unmarshal([]byte(out.line), &out.res); err != nil {
		t.Fatalf("route.js printed no JSON result (%v), exit %d\nstdout:\n%s\nstderr:\n%s", err, out.code, out.stdout, out.stderr)
	}
	return out
}

// requireAliOns returns the node binary, or skips the test (fails it when CI is set) without node or without
// ali-ons installed at the version package.json pins.
func requireAliOns(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		aliOnsMissing(t, "node is not on PATH")
	}
	var pinned struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	readJSON(t, filepath.Join(nodeDir, "package.json"), &pinned)
	want := pinned.Dependencies["ali-ons"]
	if want == "" {
		t.Fatalf("%s/package.json does not depend on ali-ons", nodeDir)
	}
	installed := filepath.Join(nodeDir, "node_modules", "ali-ons", "package.json")
	if _, err := os.Stat(installed); err != nil {
		aliOnsMissing(t, "ali-ons is not installed in test/interop/node/node_modules: run test/interop/setup.sh (npm ci)")
	}
	var got struct {
		Version string `json:"version"`
	}
	readJSON(t, installed, &got)
	if got.Version != want {
		t.Fatalf("installed ali-ons is %s, package.json pins %s: run test/interop/setup.sh (npm ci)", got.Version, want)
	}
	return node
}

func aliOnsMissing(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI is set, so the ali-ons interop test must run", reason)
	}
	t.Skipf("%s (with CI set this is a failure)", reason)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// sidecarInProcess is `rocketpilot sidecar` run in process on loopback ports, with JSON logs.
func sidecarInProcess(t *testing.T, args ...string) *inProcess {
	t.Helper()
	p := &inProcess{stopped: make(chan struct{})}
	root := newRootCommand()
	root.SetArgs(append([]string{"sidecar", "--listen", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
		"--log-format", "json", "--drain-timeout", "2s"}, args...))
	root.SetErr(&p.logs)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.err = root.ExecuteContext(ctx); close(p.stopped) }()
	t.Cleanup(func() { p.stop() })
	return p
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// call sends one request on a new connection and reads its answer.
func call(t *testing.T, addr string, code int32, ext map[string]string, body []byte) *remoting.Command {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	req := remoting.NewRequest(code, ext)
	req.Opaque, req.Body = 1, body
	frame, err := remoting.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	resp, err := remoting.NewReader(nc, 0).Read()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestSidecarCommand runs `serve --demo` and `rocketpilot sidecar` following it: a route query through the
// sidecar names the sidecar's own ports, a send to one is stored by the demo broker, /readyz and /metrics show the
// sidecar ready with one route held, and the sidecar drains and stops when its context ends.
func TestSidecarCommand(t *testing.T) {
	cp := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	xds := cp.addr(t, "serving xDS", 10*time.Second)
	sc := sidecarInProcess(t, "--xds-server", xds, "--node-id", "sidecar-test")
	namesrv := sc.addr(t, "sidecar running", 5*time.Second)
	admin := "http://" + sc.addr(t, "sidecar admin listening", time.Second)

	r := call(t, namesrv, remoting.GetRouteInfoByTopic, map[string]string{"topic": "TopicTest"}, nil)
	if r.Code != remoting.Success {
		t.Fatalf("route through the sidecar: %d %s", r.Code, r.Remark)
	}
	route, err := remoting.DecodeTopicRouteData(r.Body)
	if err != nil || len(route.BrokerDatas) != 2 {
		t.Fatalf("route %+v, %v", route, err)
	}
	port := route.BrokerDatas[0].BrokerAddrs[0]
	host, _, _ := net.SplitHostPort(port)
	if host != "127.0.0.1" {
		t.Fatalf("broker group at %s, want a loopback port of the sidecar", port)
	}
	send := call(t, port, remoting.SendMessageV2, map[string]string{"a": "pg", "b": "TopicTest", "e": "0", "f": "0",
		"g": "0", "h": "0", "i": "", "j": "0"}, []byte("through the sidecar command"))
	if send.Code != remoting.Success {
		t.Fatalf("send through the sidecar: %d %s", send.Code, send.Remark)
	}
	if code, body := httpGet(t, admin+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	_, metrics := httpGet(t, admin+"/metrics")
	for _, want := range []string{"rocketpilot_sidecar_routes 1", `rocketpilot_sidecar_requests_total{code="310",result="success"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	if err := sc.stop(); err != nil {
		t.Fatalf("sidecar: %v", err)
	}
	sc.waitLogAfterStop(t, "sidecar stopped")
}

// waitLogAfterStop checks a stopped process logged msg.
func (p *inProcess) waitLogAfterStop(t *testing.T, msg string) {
	t.Helper()
	if !strings.Contains(p.logs.String(), `"msg":"`+msg+`"`) {
		t.Fatalf("no %q in the logs:\n%s", msg, p.logs.String())
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/internal/sidecaradmin"
	"github.com/rocketpilot/rocketpilot/nameserver/client"
	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
)

// TestDescribeSidecarEndToEnd runs `serve --demo` and `rocketpilot sidecar` following it, both as processes:
// describe sidecar against the sidecar's admin listener shows it ready and connected, with no groups and no Pop
// mode until the application asks for a route; after a route query through the sidecar, the route held and the
// demo's two broker groups at the sidecar's own ports. Against the control plane's admin API it says what it reached.
func TestDescribeSidecarEndToEnd(t *testing.T) {
	s := startServe(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0")
	addrs := startLogged(t, []string{"sidecar", "--xds-server", s.xds, "--listen", "127.0.0.1:0", "--admin-address", "127.0.0.1:0",
		"--node-id", "orders-7f9c", "--log-format", "json"}, "sidecar running", "sidecar admin listening")
	sc := served{admin: addrs["sidecar admin listening"], xds: s.xds}
	namesrv := addrs["sidecar running"]

	// Ready once its xDS stream is open, which follows its start by a moment.
	desc := mustCtl(t, sc, "describe", "sidecar")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(desc, "Ready:          yes\n") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		desc = mustCtl(t, sc, "describe", "sidecar")
	}
	for _, want := range []string{"Node:           orders-7f9c\n", "xDS server:     " + s.xds + "\n", "Ready:          yes\n",
		"Connected:      yes\n", "Listen:         " + namesrv + "\n", "Routes held:    0\n", "Broker groups:  none\n", "Pop mode:       none\n"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe sidecar lacks %q:\n%s", want, desc)
		}
	}

	ns := client.New(namesrv, client.Options{})
	defer ns.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	route, _, err := ns.GetRouteInfo(ctx, embedded.DemoTopic)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, bd := range route.BrokerDatas {
		ports[bd.BrokerName] = bd.BrokerAddrs[0]
	}
	if len(ports) != 2 {
		t.Fatalf("route through the sidecar: %+v", route)
	}
	desc = mustCtl(t, sc, "describe", "sidecar")
	for _, want := range []string{"Routes held:    1\n", "Broker groups:\n  GROUP     PORT\n",
		"  broker-a  " + ports["broker-a"] + "\n", "  broker-b  " + ports["broker-b"] + "\n", "Pop mode:       none\n"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe sidecar after a route query lacks %q:\n%s", want, desc)
		}
	}
	var got sidecaradmin.Sidecar
	out := mustCtl(t, sc, "describe", "sidecar", "-o", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Node != "orders-7f9c" || got.Routes != 1 || len(got.Groups) != 2 || got.Groups[0] != (sidecaradmin.Group{Name: "broker-a", Address: ports["broker-a"]}) ||
		got.Pop == nil || !strings.Contains(out, `"pop": []`) {
		t.Errorf("describe sidecar -o json:\n%s", out)
	}

	// The control plane's admin API is not a sidecar's: said so, not a bare 404.
	_, errOut, code := ctl(t, s, "describe", "sidecar")
	if code != 1 || !strings.Contains(errOut, s.admin+" is rocketpilot's control-plane admin API") ||
		!strings.Contains(errOut, "give --server a sidecar's --admin-address") {
		t.Errorf("describe sidecar against the control plane: exit %d, %s", code, errOut)
	}
	if _, errOut, code := ctl(t, sc, "describe", "sidecar", "orders-7f9c"); code != 1 || !strings.Contains(errOut, "takes no name") {
		t.Errorf("describe sidecar NAME: exit %d, %s", code, errOut)
	}
}

// popStatus is a sidecar that served two consumer groups in Pop mode.
var popStatus = sidecaradmin.Sidecar{Node: "orders-7f9c", XDSServer: "rocketpilot.rocketmq-system:18000", Ready: true,
	Streams: 2, Listen: "127.0.0.1:9876", Routes: 3, Version: "dev",
	Groups: []sidecaradmin.Group{{Name: "broker-a", Address: "127.0.0.1:40001"}},
	Pop: []dataplane.PopStats{
		{Group: "inventory-cg", Popped: 7, Acked: 7},
		{Group: "orders-cg", Popped: 1200, Redelivered: 12, Acked: 1180, AckFailed: 2, SentBack: 5, Released: 3, InFlight: 10},
	}}

// TestDescribeSidecarPopTable: the Pop mode counts of each group, as the sidecar's admin handler serves them, are
// one row each under the table's header; a sidecar away from its control plane says so.
func TestDescribeSidecarPopTable(t *testing.T) {
	srv := httptest.NewServer(sidecaradmin.Handler(func() sidecaradmin.Sidecar { return popStatus }))
	defer srv.Close()
	desc := mustCtl(t, served{admin: srv.URL}, "describe", "sidecar")
	want := `Pop mode:
  GROUP         POPPED  REDELIVERED  ACKED  ACK-FAILED  SENT-BACK  RELEASED  IN-FLIGHT
  inventory-cg  7       0            7      0           0          0         0
  orders-cg     1200    12           1180   2           5          3         10
`
	if !strings.HasSuffix(desc, want) {
		t.Errorf("describe sidecar does not end with the Pop mode table:\n%s", desc)
	}
	for _, line := range []string{"Connected:      no (routing by its last routes until the control plane is back)\n",
		"xDS streams:    2 opened, 0 responses rejected (NACK)\n", "  broker-a  127.0.0.1:40001\n"} {
		if !strings.Contains(desc, line) {
			t.Errorf("describe sidecar lacks %q:\n%s", line, desc)
		}
	}
	yaml := mustCtl(t, served{admin: srv.URL}, "describe", "sidecar", "-o", "yaml")
	if !strings.Contains(yaml, "- ackFailed: 2\n  acked: 1180\n  group: orders-cg\n  inFlight: 10\n") {
		t.Errorf("describe sidecar -o yaml:\n%s", yaml)
	}

	draining := popStatus
	draining.Ready, draining.Draining, draining.Pop = false, true, nil
	var out bytes.Buffer
	if err := describeSidecar(&out, &draining); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Ready:          no (draining)\n") || !strings.Contains(out.String(), "Pop mode:       none\n") {
		t.Errorf("a draining sidecar without Pop mode:\n%s", out.String())
	}
}

// TestDescribeSidecarNotASidecar: a server without the sidecar's API, that is not the control plane either, is
// named with the path it lacks.
func TestDescribeSidecarNotASidecar(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, errOut, code := ctl(t, served{admin: srv.URL}, "describe", "sidecar")
	if code != 1 || !strings.Contains(errOut, srv.URL+` has no /api/v1/sidecar (404: "404 page not found"): not a Go sidecar's admin listener`) {
		t.Errorf("exit %d, %s", code, errOut)
	}
}

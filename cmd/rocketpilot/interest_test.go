package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// TestServeTwoInUseSourcesEachLearnEveryTopicInUse (issue 16, bug 1): `serve --demo --discovery in-use --config
// DIR`, the directory naming a second NameServer with the same topics as a TopicsInUse NameServerSource. A stream
// subscribes to six topics; both sources learn all six (the second used to learn none of them).
func TestServeTwoInUseSourcesEachLearnEveryTopicInUse(t *testing.T) {
	ns := demoNameServer(t)
	dir := t.TempDir()
	source := "apiVersion: rocketpilot.io/v1alpha1\nkind: NameServerSource\nmetadata: {name: second}\nspec:\n  addresses: [" +
		ns.Addr() + "]\n  discovery: TopicsInUse\n"
	if err := os.WriteFile(filepath.Join(dir, "source.yaml"), []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	p := serveInProcess(t, "--demo", "--demo-namesrv-address", "127.0.0.1:0", "--discovery", "in-use", "--config", dir)
	xdsAddr, adminAddr := p.addr(t, "serving xDS", 10*time.Second), p.addr(t, "serving the admin API", time.Second)

	st := deltaStream(t, xdsAddr, 20*time.Second)
	topics := []string{"TopicTest", "demo-orders-001", "demo-orders-002", "demo-orders-003", "demo-orders-004", "demo-orders-005"}
	// One subscription per request, as a sidecar subscribes topic by topic.
	for _, name := range topics {
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "in-use-client"}, TypeUrl: translate.RouteType,
			ResourceNamesSubscribe: []string{name}}); err != nil {
			t.Fatal(err)
		}
	}

	var sources []struct {
		Source string `json:"source"`
		Mode   string `json:"mode"`
		Topics int    `json:"topics"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		getJSON(t, "http://"+adminAddr+"/api/v1/sources", &sources)
		learned := 0
		for _, s := range sources {
			if s.Mode == "in-use" && s.Topics == len(topics) {
				learned++
			}
		}
		if len(sources) == 2 && learned == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("of %d topics in use, the sources follow %+v; want two in-use sources with all of them", len(topics), sources)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

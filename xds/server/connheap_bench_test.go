package server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"

	"github.com/rocketpilot/rocketpilot/nameserver/embedded"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// BenchmarkSidecarHeap measures the control plane's heap per connected sidecar as production has them: each
// sidecar a connection of its own with one delta stream (Envoy's ADS, the Go sidecar), subscribed to ten routes.
// The sidecars run in a child process (this test binary, TestSidecarHeapClients), so that the heap measured is the
// server's alone.
func BenchmarkSidecarHeap(b *testing.B) {
	const sidecars, routes = 1000, 10
	s := startStack(b, embedded.LoadDemo)
	topics := s.ns.Topics()
	for b.Loop() {
		before := settledHeap()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSidecarHeapClients$")
		cmd.Env = append(os.Environ(), "SIDECAR_HEAP_CLIENTS="+s.addr+","+strconv.Itoa(sidecars)+","+strconv.Itoa(routes)+","+strings.Join(topics, "|"))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "synced" {
			b.Fatalf("clients: %q", line)
		}
		time.Sleep(300 * time.Millisecond) // the last ACKs land
		after := settledHeap()
		if p := os.Getenv("SIDECAR_HEAP_PROFILE"); p != "" {
			f, _ := os.Create(p)
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
		}
		b.ReportMetric(float64(int64(after)-int64(before))/sidecars/1024, "server-KiB/sidecar")
		stdin.Close()
		cmd.Wait()
	}
}

func settledHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSidecarHeapClients is BenchmarkSidecarHeap's child: it connects the sidecars, says "synced" once each has its
// routes, and holds them until its standard input closes. Without the benchmark's variable it does nothing.
func TestSidecarHeapClients(t *testing.T) {
	env := os.Getenv("SIDECAR_HEAP_CLIENTS")
	if env == "" {
		return
	}
	parts := strings.SplitN(env, ",", 4)
	addr, topics := parts[0], strings.Split(parts[3], "|")
	n, _ := strconv.Atoi(parts[1])
	per, _ := strconv.Atoi(parts[2])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for j := range per {
			names = append(names, topics[(i*per+j)%len(topics)])
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("sidecar-%d", i)},
			TypeUrl: translate.RouteType, ResourceNamesSubscribe: names}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: translate.RouteType, ResponseNonce: resp.Nonce}); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("synced")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the benchmark closes it
}

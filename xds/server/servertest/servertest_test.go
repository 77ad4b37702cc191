package servertest_test

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/server/servertest"
)

// The harness serves xDS on loopback and the admin API over the same cache, ready from the start.
func TestStartServesXDSAndAdmin(t *testing.T) {
	table := routing.NewTable()
	cp := servertest.Start(t, server.StackConfig{Table: table})
	if cp.Table() != table {
		t.Fatal("the stack does not use the table it was given")
	}
	conn, err := grpc.NewClient(cp.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "test"},
		TypeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener", ResourceNamesSubscribe: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("no response from the stack's xDS server: %v", err)
	}
	srv := httptest.NewServer(cp.Admin().Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz of a serving stack: %d %s", resp.StatusCode, body)
	}
}

// Stop before Serve, and twice, ends cleanly.
func TestStopBeforeServe(t *testing.T) {
	cp, err := server.NewStack(server.StackConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cp.Start(context.Background())
	select {
	case <-cp.Ready():
		t.Fatal("ready before Serve")
	default:
	}
	cp.Stop()
	cp.Stop()
}

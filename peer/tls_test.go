package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/routing"
)

// Under mutual TLS the peer service serves only replicas: a certificate naming the replicas' Service is served;
// another certificate of the same CA, and a workload's (a SPIFFE ID), are refused.
func TestPeerServiceServesOnlyReplicas(t *testing.T) {
	ca := certtest.NewCA(t, "rocketpilot-ca")
	const service = "rocketpilot.rocketpilot-system.svc"
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	pair := func(p certtest.Pair) tls.Certificate {
		c, err := tls.X509KeyPair(p.Cert, p.Key)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	serving := pair(ca.Server(t, "rocketpilot")) // for localhost
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	table := routing.NewTable()
	table.Apply("namesrv@a", routing.Update{Topic: "t1", Route: route("broker-a")})
	s := NewServer(ctx, table, []string{service}, nil)
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serving}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12})))
	s.Register(g)
	go s.Run(ctx)
	served := make(chan struct{})
	go func() { _ = g.Serve(lis); close(served) }()
	t.Cleanup(func() { cancel(); g.Stop(); <-served })

	follow := func(client tls.Certificate) (*Follower, *routing.Table) {
		ft := routing.NewTable()
		creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{client}, RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12})
		f := NewFollower(ft, FollowerOptions{Leader: func() string { return lis.Addr().String() }, All: true,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Dial: []grpc.DialOption{grpc.WithTransportCredentials(creds)}})
		fctx, fcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { f.Run(fctx); close(done) }()
		t.Cleanup(func() { fcancel(); <-done })
		return f, ft
	}
	replica, rt := follow(pair(ca.Workload(t, "rocketpilot", service)))
	other, ot := follow(pair(ca.Workload(t, "someone", "someone.default.svc")))
	workload, wt := follow(pair(ca.Workload(t, "app", "spiffe://cluster.local/ns/default/node/app.default", service)))
	select {
	case <-replica.Synced():
	case <-time.After(10 * time.Second):
		t.Fatalf("a replica's certificate was not served: %+v", replica.Status())
	}
	same(t, "a replica", table, rt, "t1")
	time.Sleep(300 * time.Millisecond)
	for name, c := range map[string]struct {
		f  *Follower
		ft *routing.Table
	}{"another certificate of the CA": {other, ot}, "a workload's certificate": {workload, wt}} {
		select {
		case <-c.f.Synced():
			t.Fatalf("%s was served", name)
		default:
		}
		if c.ft.Topic("t1") != nil {
			t.Fatalf("%s received a route", name)
		}
		if st := c.f.Status(); st.LastError == "" {
			t.Fatalf("%s: no error reported: %+v", name, st)
		}
	}
}

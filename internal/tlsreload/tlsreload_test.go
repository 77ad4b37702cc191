package tlsreload_test

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"

	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
)

func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	first := ca.Server(t, "first")
	f := certtest.Write(t, dir, "tls.crt", first.Cert, "tls.key", first.Key, "ca.crt", ca.PEM)
	r, err := tlsreload.New(tlsreload.Files{Cert: f[0], Key: f[1], ClientCA: f[2]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate {
		cfg, err := r.ServerConfig(tls.RequireAndVerifyClientCert, "h2").GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || cfg.NextProtos[0] != "h2" {
			t.Fatalf("config %+v", cfg)
		}
		leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	if served().SerialNumber.Cmp(first.Serial) != 0 || !r.MutualTLS() {
		t.Fatal("not the first certificate")
	}
	// A replica dialling another presents its current certificate, reloaded with it.
	peer := r.PeerClientConfig("rocketpilot.ns.svc")
	presented := func() *big.Int {
		c, err := peer.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber
	}
	if presented().Cmp(first.Serial) != 0 || peer.RootCAs == nil || peer.ServerName != "rocketpilot.ns.svc" {
		t.Fatalf("peer client config: serial %v, roots %v, server name %q", presented(), peer.RootCAs, peer.ServerName)
	}
	if swapped, err := r.Reload(); swapped || err != nil {
		t.Fatalf("unchanged files: swapped %v, err %v", swapped, err)
	}
	second := ca.Server(t, "second")
	certtest.Write(t, dir, "tls.crt", second.Cert, "tls.key", second.Key)
	if swapped, err := r.Reload(); !swapped || err != nil {
		t.Fatalf("new files: swapped %v, err %v", swapped, err)
	}
	if served().SerialNumber.Cmp(second.Serial) != 0 || r.Reloads() != 2 {
		t.Fatalf("after the rotation: serial %v, reloads %d", served().SerialNumber, r.Reloads())
	}
	if presented().Cmp(second.Serial) != 0 {
		t.Fatal("the peer client config still presents the certificate before the rotation")
	}
	// Half a rotation (a new key, the old certificate) and a CA file without a certificate: errors, nothing swapped.
	certtest.Write(t, dir, "tls.key", ca.Server(t, "third").Key)
	if swapped, err := r.Reload(); swapped || err == nil {
		t.Fatalf("mismatched pair: swapped %v, err %v", swapped, err)
	}
	certtest.Write(t, dir, "tls.key", second.Key, "ca.crt", []byte("not a certificate"))
	if _, err := r.Reload(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("bad CA file: %v", err)
	}
	if served().SerialNumber.Cmp(second.Serial) != 0 {
		t.Fatal("a failed reload changed the served certificate")
	}
}

func TestNewAndClientConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := certtest.NewCA(t, "ca")
	cli := ca.Client(t, "client")
	f := certtest.Write(t, dir, "ca.crt", ca.PEM, "client.crt", cli.Cert, "client.key", cli.Key, "junk", []byte("junk"))
	for _, files := range []tlsreload.Files{{Cert: f[1]}, {Cert: f[1], Key: f[3]}, {Cert: dir + "/missing", Key: f[2]}} {
		if _, err := tlsreload.New(files, nil); err == nil {
			t.Errorf("New(%+v) accepted", files)
		}
	}
	if _, err := tlsreload.ClientConfig(f[0], f[1], "", ""); err == nil {
		t.Error("a client certificate without its key accepted")
	}
	if _, err := tlsreload.ClientConfig(f[3], "", "", ""); err == nil {
		t.Error("a CA file without a certificate accepted")
	}
	cfg, err := tlsreload.ClientConfig(f[0], f[1], f[2], "rocketpilot")
	if err != nil || len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.ServerName != "rocketpilot" {
		t.Fatalf("client config %+v, %v", cfg, err)
	}
}

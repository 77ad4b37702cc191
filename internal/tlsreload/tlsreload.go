// Package tlsreload serves TLS from certificate files that change while the process runs (a Kubernetes Secret
// volume, cert-manager, a rotation script): it polls the files and swaps the configuration when their content
// changes. A change that does not load (a key written before its certificate) is logged and the last good
// configuration kept, so a rotation never takes a listener down. Handshakes after a swap use the new files;
// established connections keep theirs.
//
// controller-runtime's certwatcher reloads a certificate and key the same way, but not a client CA bundle, which
// mutual TLS rotates too; one poller for the three files keeps them consistent.
package tlsreload

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files name the PEM files of a server: its certificate chain and key, and optionally the CAs that sign client
// certificates (mutual TLS).
type Files struct {
	Cert, Key, ClientCA string
}

// Reloader holds the current certificate and client CA pool loaded from Files.
type Reloader struct {
	files Files
	log   *slog.Logger

	mu      sync.RWMutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	raw     [3][]byte // the files' content last loaded
	reloads int
}

// New loads files; it fails when they do not form a valid certificate, key and CA bundle.
func New(files Files, log *slog.Logger) (*Reloader, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{files: files, log: log}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// MutualTLS reports whether a client CA is configured.
func (r *Reloader) MutualTLS() bool { return r.files.ClientCA != "" }

// Reloads is how many times the files were loaded (the first load included).
func (r *Reloader) Reloads() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.reloads
}

// Reload reads the files and, when their content changed, loads them. It reports whether it swapped; on error
// the last good configuration stays.
func (r *Reloader) Reload() (bool, error) {
	var raw [3][]byte
	for i, path := range []string{r.files.Cert, r.files.Key, r.files.ClientCA} {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", path, err)
		}
		raw[i] = b
	}
	r.mu.RLock()
	same := bytes.Equal(raw[0], r.raw[0]) && bytes.Equal(raw[1], r.raw[1]) && bytes.Equal(raw[2], r.raw[2]) && r.cert != nil
	r.mu.RUnlock()
	if same {
		return false, nil
	}
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return false, fmt.Errorf("load %s and %s: %w", r.files.Cert, r.files.Key, err)
	}
	var pool *x509.CertPool
	if r.files.ClientCA != "" {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw[2]) {
			return false, fmt.Errorf("%s holds no PEM certificate", r.files.ClientCA)
		}
	}
	r.mu.Lock()
	r.cert, r.pool, r.raw = &cert, pool, raw
	r.reloads++
	r.mu.Unlock()
	return true, nil
}

// Run polls the files every interval until ctx ends.
func (r *Reloader) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch swapped, err := r.Reload(); {
		case err != nil:
			r.log.Error("TLS files changed but do not load; keeping the last good ones", "err", err)
		case swapped:
			r.log.Info("TLS certificate reloaded", "cert", r.files.Cert, "clientCA", r.files.ClientCA)
		}
	}
}

// ServerConfig returns a server configuration that uses the current files at each handshake. With a client CA,
// clientAuth says how client certificates are checked (tls.RequireAndVerifyClientCert, or
// tls.VerifyClientCertIfGiven where some paths are open to clients without one); without, none is asked for.
// nextProtos are the ALPN protocols ("h2" for gRPC).
func (r *Reloader) ServerConfig(clientAuth tls.ClientAuthType, nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.mu.RLock()
			defer r.mu.RUnlock()
			cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos, Certificates: []tls.Certificate{*r.cert}}
			if r.pool != nil {
				cfg.ClientCAs, cfg.ClientAuth = r.pool, clientAuth
			}
			return cfg, nil
		},
	}
}

// PeerClientConfig returns a client configuration for a replica dialling another with the same files: the
// current certificate as client certificate at each handshake (a rotated one is used from its reload on), and the
// client CA bundle, as loaded now, to verify the server under serverName.
func (r *Reloader) PeerClientConfig(serverName string) *tls.Config {
	r.mu.RLock()
	pool := r.pool
	r.mu.RUnlock()
	return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, RootCAs: pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.mu.RLock()
			defer r.mu.RUnlock()
			return r.cert, nil
		}}
}

// ClientConfig returns a client configuration: ca verifies the server (the system roots when empty), cert and key
// are the client's certificate for mutual TLS (none when empty), serverName overrides the name verified.
func ClientConfig(ca, cert, key, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s holds no PEM certificate", ca)
		}
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("a client certificate needs both its certificate and key files")
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

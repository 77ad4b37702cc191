package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// errNotFound is what the admin API answers 404 with.
type errNotFound struct{ msg string }

func (e errNotFound) Error() string { return e.msg }

// getJSON reads one admin API path into v.
func (g *globals) getJSON(ctx context.Context, path string, query url.Values, v any) error {
	base := strings.TrimRight(g.server, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if g.tls.enabled() { // the TLS flags mean TLS, whatever --server's default scheme says
		base = "https://" + strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	}
	hc, err := g.httpClient()
	if err != nil {
		return err
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach rocketpilot's admin API at %s (set --server or ROCKETCTL_SERVER): %w", g.server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e server.ErrorBody
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusNotFound {
			return errNotFound{msg}
		}
		return fmt.Errorf("%s: %s: %s", path, resp.Status, msg)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// withTimeout bounds a request by --request-timeout; 0 means no bound, as for kubectl.
func (g *globals) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, g.timeout)
}

// tlsFlags are rocketctl's TLS settings for rocketpilot's admin API and xDS server.
type tlsFlags struct{ ca, cert, key, serverName string }

func (t tlsFlags) enabled() bool { return t.ca != "" || t.cert != "" }

func (t tlsFlags) config() (*tls.Config, error) {
	cfg, err := tlsreload.ClientConfig(t.ca, t.cert, t.key, t.serverName)
	if err != nil {
		return nil, fmt.Errorf("TLS flags: %w", err)
	}
	return cfg, nil
}

// httpClient is the admin API's client: the default one, or one with the TLS flags' configuration.
func (g *globals) httpClient() (*http.Client, error) {
	if !g.tls.enabled() {
		return http.DefaultClient, nil
	}
	cfg, err := g.tls.config()
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment}}, nil
}

// xdsDialOptions are the xDS client's credentials: TLS when the TLS flags are set, plaintext otherwise.
func (g *globals) xdsDialOptions() ([]grpc.DialOption, error) {
	if !g.tls.enabled() {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	cfg, err := g.tls.config()
	if err != nil {
		return nil, err
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}

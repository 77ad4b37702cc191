package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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
		if notHTTP1(err) {
			return fmt.Errorf("%s is not rocketpilot's admin API: it does not answer HTTP/1.1 (an HTTP/2 or gRPC port, such as "+
				"rocketpilot's xDS port?); --server takes the admin address (serve --admin-address, 127.0.0.1:19000 by default)", g.server)
		}
		return fmt.Errorf("cannot reach rocketpilot's admin API at %s (set --server or ROCKETCTL_SERVER): %w", g.server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e server.ErrorBody
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			return g.notRocketpilot(path, resp.StatusCode, resp.Status, body)
		}
		if resp.StatusCode == http.StatusNotFound {
			return errNotFound{e.Error}
		}
		return fmt.Errorf("%s: %s: %s", path, resp.Status, e.Error)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return g.notRocketpilot(path, resp.StatusCode, resp.Status, body)
	}
	return nil
}

// notRocketpilot is the error for an answer rocketpilot's admin API would not give (an HTML page, an empty or plain
// text error, another JSON): what was reached and what was expected, with the start of what it said.
func (g *globals) notRocketpilot(path string, code int, status string, body []byte) error {
	if code == http.StatusNotFound && strings.TrimSpace(string(body)) == "404 page not found" {
		// Go's own answer for a path it does not serve: maybe a rocketpilot older than this rocketctl.
		return notRocketpilotError{code: code, said: strconv.Quote("404 page not found"), msg: fmt.Sprintf(
			"%s has no GET %s (404 page not found): a rocketpilot older than this rocketctl, or not rocketpilot's admin API "+
				"(serve --admin-address, 127.0.0.1:19000 by default)", g.server, path)}
	}
	said := strings.Join(strings.Fields(string(body)), " ")
	said = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0xfffd {
			return -1
		}
		return r
	}, said)
	if len(said) > 80 {
		said = said[:77] + "..."
	}
	if said == "" {
		said = "an empty body"
	} else {
		said = strconv.Quote(said)
	}
	return notRocketpilotError{code: code, said: said, msg: fmt.Sprintf("%s does not answer as rocketpilot's admin API: GET %s gave %s with %s, "+
		"where rocketpilot answers JSON; is --server (or ROCKETCTL_SERVER) rocketpilot's admin address (serve --admin-address, "+
		"127.0.0.1:19000 by default)?", g.server, path, status, said)}
}

// notRocketpilotError is an answer rocketpilot's admin API would not give.
type notRocketpilotError struct {
	code      int    // the HTTP status
	said, msg string // the start of the body, quoted; the whole message
}

func (e notRocketpilotError) Error() string { return e.msg }

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
	c := g.tlsClient
	if c == nil {
		c = &tlsClient{}
	}
	c.once.Do(func() {
		cfg, err := g.tls.config()
		if err != nil {
			c.err = err
			return
		}
		c.client = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment,
			IdleConnTimeout: 30 * time.Second}}
	})
	return c.client, c.err
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

// notHTTP1 reports whether a request failed because the server does not speak HTTP/1.1: it answered with bytes
// that are not an HTTP/1 response (HTTP/2 frames: a gRPC server such as rocketpilot's xDS port), or with none
// before closing a fresh connection (what net/http reports as readLoopPeekFailLocked).
func notHTTP1(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "malformed HTTP response") || strings.Contains(msg, "readLoopPeekFailLocked")
}

package workloadca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Source is a sidecar's client certificate from an Authority: Fetch gets one, Run renews it when two thirds of its
// life have passed (and retries a failure with backoff, keeping the current one meanwhile), and
// GetClientCertificate hands the current one to each TLS handshake. Connections already open keep the certificate
// they were opened with: a renewal never touches an open xDS stream. Each certificate has a key of its own, made
// here and never written anywhere.
type Source struct {
	url       string
	tokenFile string
	client    *http.Client
	log       *slog.Logger
	cur       atomic.Pointer[tls.Certificate]
	fetched   atomic.Int64 // when cur was obtained, in Unix nanoseconds: its life is counted from then (NotBefore is backdated)
	renewals  atomic.Int64
}

// NewSource returns a Source asking the Authority at base (https://HOST:PORT), whose server certificate caTLS
// verifies, with the token in tokenFile.
func NewSource(base, tokenFile string, caTLS *tls.Config, log *slog.Logger) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{url: strings.TrimSuffix(base, "/") + Path, tokenFile: tokenFile, log: log,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: caTLS}}}
}

// Fetch asks for a certificate for a new key and makes it the current one.
func (s *Source) Fetch(ctx context.Context) error {
	token, err := readToken(s.tokenFile)
	if err != nil {
		return fmt.Errorf("service account token: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(request{CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("workload certificate from %s: %w", s.url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("workload certificate from %s: %s: %s", s.url, res.Status, strings.TrimSpace(string(raw)))
	}
	var out response
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("workload certificate from %s: %w", s.url, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair([]byte(out.CertificateChain), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return fmt.Errorf("workload certificate from %s: %w", s.url, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return err
		}
	}
	s.fetched.Store(time.Now().UnixNano())
	s.cur.Store(&cert)
	s.renewals.Add(1)
	var ids []string
	for _, u := range cert.Leaf.URIs {
		ids = append(ids, u.String())
	}
	s.log.Info("workload certificate", "id", strings.Join(ids, " "), "notAfter", cert.Leaf.NotAfter)
	return nil
}

// Current is the current certificate, or nil before the first Fetch.
func (s *Source) Current() *tls.Certificate { return s.cur.Load() }

// Fetches is how many certificates were obtained.
func (s *Source) Fetches() int64 { return s.renewals.Load() }

// GetClientCertificate is for tls.Config: the current certificate.
func (s *Source) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := s.cur.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no workload certificate yet")
}

// Run renews the certificate until ctx ends: at two thirds of its life, and after a failure again after a backoff
// of minBackoff doubling up to a minute, the current certificate serving meanwhile.
func (s *Source) Run(ctx context.Context, minBackoff time.Duration) {
	backoff, failed := minBackoff, false
	for {
		wait := backoff
		if c := s.cur.Load(); c != nil && !failed {
			from := time.Unix(0, s.fetched.Load())
			wait = max(time.Until(from.Add(c.Leaf.NotAfter.Sub(from)*2/3)), minBackoff)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.Fetch(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("workload certificate renewal failed; keeping the current one", "err", err, "retryIn", backoff)
			failed, backoff = true, min(backoff*2, time.Minute)
			continue
		}
		failed, backoff = false, minBackoff
	}
}

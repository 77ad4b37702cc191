// Package workloadca gives sidecars their client certificates, as Istio's control plane does, with no component
// besides rocketpilot: a sidecar proves its pod's service account with a projected service account token (audience
// Audience), which the Kubernetes API reviews (TokenReview), and is signed a short-lived certificate naming
// spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT by the CA whose key rocketpilot holds. The sidecar keeps the
// key it made and renews the certificate before it expires (Source); the xDS server's identity check
// (xds/server.IdentityCheck) then binds its node to that namespace.
//
// The server side is Authority (POST /api/v1/certificates, JSON {"csr": PEM} with the token as a bearer
// credential, answered with {"certificateChain": PEM}); the client side is Source.
package workloadca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Audience is the audience of the service account tokens sidecars present: a token made for the API server (or
// anything else) is refused.
const Audience = "rocketpilot"

// Path is where Authority's handler answers.
const Path = "/api/v1/certificates"

// Reviewer tells whose a service account token is.
type Reviewer interface {
	Review(ctx context.Context, token string) (namespace, serviceAccount string, err error)
}

// TokenReviewer reviews tokens with the Kubernetes API (TokenReview, audience Audience): it needs RBAC to create
// tokenreviews, as the chart grants.
type TokenReviewer struct{ Client kubernetes.Interface }

// Review implements Reviewer.
func (r TokenReviewer) Review(ctx context.Context, token string) (string, string, error) {
	res, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}}}, metav1.CreateOptions{})
	if err != nil {
		return "", "", fmt.Errorf("token review: %w", err)
	}
	if !res.Status.Authenticated {
		return "", "", fmt.Errorf("token not authenticated: %s", res.Status.Error)
	}
	// A service account's user name: system:serviceaccount:NAMESPACE:NAME.
	parts := strings.Split(res.Status.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("the token is %q's, not a service account's", res.Status.User.Username)
	}
	return parts[2], parts[3], nil
}

// Options configure an Authority. Zero values take the defaults in parentheses.
type Options struct {
	TrustDomain string        // of the SPIFFE ids ("cluster.local")
	TTL         time.Duration // of the certificates (24h)
	Logger      *slog.Logger
}

// Authority signs workload certificates with a CA.
type Authority struct {
	ca       *x509.Certificate
	key      crypto.Signer
	caPEM    []byte
	review   Reviewer
	opts     Options
	issued   *prometheus.CounterVec
	issuedOK prometheus.Counter
	refused  prometheus.Counter
}

// Load reads the CA's certificate and key (PEM files: the chart's CA Secret) and returns an Authority that
// authenticates callers with review.
func Load(certFile, keyFile string, review Reviewer, opts Options) (*Authority, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("workload CA: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("workload CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, errors.New("workload CA: the certificate is not a CA's")
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("workload CA: the key cannot sign")
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = "cluster.local"
	}
	if opts.TTL <= 0 {
		opts.TTL = 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authority{ca: ca, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), review: review, opts: opts,
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_workload_certificates_total",
			Help: "Workload certificate requests, by result: issued, or refused (a token not reviewed, a bad request)."}, []string{"result"})}
	a.issuedOK, a.refused = a.issued.WithLabelValues("issued"), a.issued.WithLabelValues("refused")
	return a, nil
}

func (a *Authority) Describe(ch chan<- *prometheus.Desc) { a.issued.Describe(ch) }
func (a *Authority) Collect(ch chan<- prometheus.Metric) { a.issued.Collect(ch) }

// ID is the SPIFFE id of a service account.
func (a *Authority) ID(namespace, serviceAccount string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: a.opts.TrustDomain, Path: "/ns/" + namespace + "/sa/" + serviceAccount}
}

// Sign issues a client certificate for the CSR's key naming the service account, valid for the TTL (backdated a
// minute for clocks that differ); it returns the chain in PEM, the CA's certificate last.
func (a *Authority) Sign(csr *x509.CertificateRequest, namespace, serviceAccount string) ([]byte, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the CSR's signature: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(a.opts.TTL),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{a.ID(namespace, serviceAccount)},
	}
	if tmpl.NotAfter.After(a.ca.NotAfter) {
		tmpl.NotAfter = a.ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.ca, csr.PublicKey, a.key)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), a.caPEM...), nil
}

// request and response are the endpoint's JSON.
type request struct {
	CSR string `json:"csr"`
}

type response struct {
	CertificateChain string `json:"certificateChain"`
}

// Handler answers POST Path: a CSR in PEM, the token as "Authorization: Bearer TOKEN".
func (a *Authority) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || token == "" {
			a.refuse(w, r, http.StatusUnauthorized, "a service account token is needed: Authorization: Bearer TOKEN (audience "+Audience+")")
			return
		}
		ns, sa, err := a.review.Review(r.Context(), token)
		if err != nil {
			a.refuse(w, r, http.StatusUnauthorized, err.Error())
			return
		}
		var req request
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			a.refuse(w, r, http.StatusBadRequest, "the body: "+err.Error())
			return
		}
		block, _ := pem.Decode([]byte(req.CSR))
		if block == nil || block.Type != "CERTIFICATE REQUEST" {
			a.refuse(w, r, http.StatusBadRequest, "csr: want a PEM CERTIFICATE REQUEST")
			return
		}
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			a.refuse(w, r, http.StatusBadRequest, "csr: "+err.Error())
			return
		}
		chain, err := a.Sign(csr, ns, sa)
		if err != nil {
			a.refuse(w, r, http.StatusBadRequest, err.Error())
			return
		}
		a.issuedOK.Inc()
		a.opts.Logger.Info("workload certificate issued", "namespace", ns, "serviceAccount", sa, "ttl", a.opts.TTL)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(response{CertificateChain: string(chain)})
	})
	return mux
}

func (a *Authority) refuse(w http.ResponseWriter, r *http.Request, code int, reason string) {
	a.refused.Inc()
	a.opts.Logger.Info("workload certificate refused", "remote", r.RemoteAddr, "reason", reason)
	http.Error(w, reason, code)
}

// readToken reads a projected token file, which the kubelet rewrites as it rotates the token.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

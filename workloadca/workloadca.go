// Package workloadca gives sidecars their client certificates, as Istio's control plane does, with no component
// besides rocketpilot: a sidecar proves its pod with a projected service account token (audience Audience), which
// the Kubernetes API reviews (TokenReview), and is signed a short-lived certificate naming its pod's node,
// spiffe://TRUST-DOMAIN/ns/NAMESPACE/node/POD.NAMESPACE (or its service account, .../sa/NAME, for a token bound to
// no pod) by the CA whose key rocketpilot holds. The sidecar keeps the
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
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Audience is the audience of the service account tokens sidecars present: a token made for the API server (or
// anything else) is refused.
const Audience = "rocketpilot"

// Path is where Authority's handler answers.
const Path = "/api/v1/certificates"

// Identity is whose a token is: a service account, and the pod the token is bound to when it is (a projected
// token is).
type Identity struct {
	Namespace, ServiceAccount, Pod string
	// Labels are the pod's, read from the Kubernetes API when the token is bound to a pod.
	Labels map[string]string
}

// Reviewer tells whose a service account token is.
type Reviewer interface {
	Review(ctx context.Context, token string) (Identity, error)
}

// TokenReviewer reviews tokens with the Kubernetes API (TokenReview, audience Audience) and reads the labels of the
// pod a token is bound to: it needs RBAC to create tokenreviews and get pods, as the chart grants.
type TokenReviewer struct{ Client kubernetes.Interface }

// Review implements Reviewer.
func (r TokenReviewer) Review(ctx context.Context, token string) (Identity, error) {
	res, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}}}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("token review: %w", err)
	}
	if !res.Status.Authenticated {
		return Identity{}, fmt.Errorf("token not authenticated: %s", res.Status.Error)
	}
	// An authenticator that ignores audiences (a webhook's) would pass a token made for another: the answer must
	// name ours, as the TokenReview API asks of its clients.
	if !slices.Contains(res.Status.Audiences, Audience) {
		return Identity{}, fmt.Errorf("the token is not for audience %s (its review says %v)", Audience, res.Status.Audiences)
	}
	if !slices.Contains(res.Status.User.Groups, "system:serviceaccounts") {
		return Identity{}, fmt.Errorf("the token is %q's, not a service account's", res.Status.User.Username)
	}
	// A service account's user name: system:serviceaccount:NAMESPACE:NAME.
	parts := strings.Split(res.Status.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return Identity{}, fmt.Errorf("the token is %q's, not a service account's", res.Status.User.Username)
	}
	id := Identity{Namespace: parts[2], ServiceAccount: parts[3]}
	names, uids := res.Status.User.Extra[podNameExtra], res.Status.User.Extra[podUIDExtra]
	if len(names) != 1 || len(uids) != 1 {
		return id, nil // a token bound to no pod: the service account's identity, no labels
	}
	// The pod's labels, which its certificate will carry: TopicBindings select pods by them. The UID makes sure the
	// pod is the one the token was made for, not a later one of the same name.
	pod, err := r.Client.CoreV1().Pods(id.Namespace).Get(ctx, names[0], metav1.GetOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("the labels of pod %s/%s: %w", id.Namespace, names[0], err)
	}
	if string(pod.UID) != uids[0] {
		return Identity{}, fmt.Errorf("pod %s/%s is not the one the token was made for", id.Namespace, names[0])
	}
	id.Pod, id.Labels = pod.Name, pod.Labels
	return id, nil
}

// podNameExtra and podUIDExtra are the user extras a pod-bound token's review names its pod in.
const (
	podNameExtra = "authentication.kubernetes.io/pod-name"
	podUIDExtra  = "authentication.kubernetes.io/pod-uid"
)

// Options configure an Authority. Zero values take the defaults in parentheses.
type Options struct {
	TrustDomain string        // of the SPIFFE ids ("cluster.local")
	TTL         time.Duration // of the certificates (24h)
	// RequestRate bounds the requests reviewed per second (50, in bursts of 100): each costs a TokenReview, and
	// a flood of made-up tokens must not hold up sidecars' renewals; beyond it, 429.
	RequestRate float64
	Logger      *slog.Logger
}

// Authority signs workload certificates with a CA.
type Authority struct {
	ca       *x509.Certificate
	key      crypto.Signer
	caPEM    []byte
	review   Reviewer
	limit    *rate.Limiter
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
	if opts.RequestRate <= 0 {
		opts.RequestRate = 50
	}
	a := &Authority{ca: ca, key: key, limit: rate.NewLimiter(rate.Limit(opts.RequestRate), int(2*opts.RequestRate)+1), caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), review: review, opts: opts,
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rocketpilot_workload_certificates_total",
			Help: "Workload certificate requests, by result: issued, or refused (a token not reviewed, a bad request)."}, []string{"result"})}
	a.issuedOK, a.refused = a.issued.WithLabelValues("issued"), a.issued.WithLabelValues("refused")
	return a, nil
}

func (a *Authority) Describe(ch chan<- *prometheus.Desc) { a.issued.Describe(ch) }
func (a *Authority) Collect(ch chan<- prometheus.Metric) { a.issued.Collect(ch) }

// ID is the SPIFFE id a certificate for id names: its pod's node, spiffe://TD/ns/NS/node/POD.NS, when the token is
// bound to a pod (the node id `rocketctl kube-inject` gives it, and no other: a pod cannot speak for its
// neighbours), else its service account, spiffe://TD/ns/NS/sa/SA (any node id NAME.NS).
func (a *Authority) ID(id Identity) *url.URL {
	if id.Pod != "" {
		return &url.URL{Scheme: "spiffe", Host: a.opts.TrustDomain, Path: "/ns/" + id.Namespace + "/node/" + id.Pod + "." + id.Namespace}
	}
	return &url.URL{Scheme: "spiffe", Host: a.opts.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Sign issues a client certificate for the CSR's key naming id (ID), valid for the TTL (backdated a minute for
// clocks that differ); it returns the chain in PEM, the CA's certificate last. Of the CSR only its key is used:
// the names it asks for are not.
func (a *Authority) Sign(csr *x509.CertificateRequest, id Identity) ([]byte, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the CSR's signature: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if !a.ca.NotAfter.After(now.Add(time.Minute)) {
		return nil, fmt.Errorf("the workload CA's certificate expires at %s: renew it", a.ca.NotAfter)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(a.opts.TTL),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{a.ID(id)},
	}
	if id.Pod != "" {
		tmpl.URIs = append(tmpl.URIs, LabelsURI(id.Labels))
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
		if !a.limit.Allow() {
			a.refuse(w, r, http.StatusTooManyRequests, "too many certificate requests: retry later")
			return
		}
		id, err := a.review.Review(r.Context(), token)
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
		chain, err := a.Sign(csr, id)
		if err != nil {
			a.refuse(w, r, http.StatusBadRequest, err.Error())
			return
		}
		a.issuedOK.Inc()
		a.opts.Logger.Info("workload certificate issued", "namespace", id.Namespace, "serviceAccount", id.ServiceAccount, "pod", id.Pod, "ttl", a.opts.TTL)
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

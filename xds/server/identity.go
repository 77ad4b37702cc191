package server

import (
	"context"
	"crypto/x509"
	"log/slog"
	"maps"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/rocketpilot/rocketpilot/workloadca"
	"github.com/rocketpilot/rocketpilot/xds/cache"
)

// IdentityCheck binds a stream's node to its client certificate, under mutual TLS: the node id and the namespace
// a node claims (node metadata NAMESPACE) decide which TopicBindings select it, so a client must not claim
// another's. A certificate names a node in one of three ways (docs/operations.md, "Node identity"):
//
//   - a URI SAN spiffe://TRUST-DOMAIN/ns/NAMESPACE/node/NODE-ID: that node id, claiming that namespace;
//   - a URI SAN spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT (Istio's workload identity): any node id of
//     the form NAME.NAMESPACE (the id `rocketctl kube-inject` gives a pod), claiming that namespace;
//   - a DNS SAN equal to the node id: that node id, claiming no namespace or one it ends in (".NAMESPACE").
//
// A certificate that names a namespace makes the claim required: a node that left it out would match no
// namespace's selector, and so escape a strict TopicBinding that selects its namespace. A node id or namespace the
// certificate does not name is refused with PERMISSION_DENIED and counted. A certificate the workload CA issued for
// a pod carries the pod's labels too: the node's claimed labels (node metadata LABELS) must be exactly those.
// Any trust domain is accepted: the CA that signed the certificate is the trust anchor. It is a Prometheus
// collector.
type IdentityCheck struct {
	log     *slog.Logger
	refused prometheus.Counter
	mu      sync.Mutex
	peers   map[identityKey]*peerIdentity // open streams'
}

// peerIdentity is an open stream's verified client certificate, and the node it last claimed: a delta request
// that leaves the node out speaks for that one (go-control-plane fills the node in after the callback).
type peerIdentity struct {
	cert *x509.Certificate
	node *corev3.Node
}

type identityKey struct {
	delta bool
	id    int64
}

// NewIdentityCheck returns the check, counting refusals in rocketpilot_xds_identity_refused_total and logging
// them to log (nil: not logged).
func NewIdentityCheck(log *slog.Logger) *IdentityCheck {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &IdentityCheck{log: log, peers: map[identityKey]*peerIdentity{},
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "rocketpilot_xds_identity_refused_total",
			Help: "xDS requests refused because their node id, namespace or labels are not what the client certificate names."})}
}

func (c *IdentityCheck) Describe(ch chan<- *prometheus.Desc) { c.refused.Describe(ch) }
func (c *IdentityCheck) Collect(ch chan<- prometheus.Metric) { c.refused.Collect(ch) }

// clientCertificate is the stream's verified client certificate, if any.
func clientCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// Permits reports, with a reason when not, whether cert may speak for node.
func Permits(cert *x509.Certificate, node *corev3.Node) error {
	if cert == nil {
		return status.Error(codes.PermissionDenied, "node identity: the stream has no verified client certificate")
	}
	if err := labelsCertified(cert, node); err != nil {
		return err
	}
	id := node.GetId()
	ns := node.GetMetadata().GetFields()[cache.MetadataNamespaceKey].GetStringValue()
	var named []string
	for _, u := range cert.URIs {
		named = append(named, u.String())
		if u.Scheme != "spiffe" {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) != 4 || parts[0] != "ns" || parts[1] == "" || parts[3] == "" || ns != parts[1] {
			continue
		}
		switch parts[2] {
		case "node":
			if id == parts[3] {
				return nil
			}
		case "sa":
			if name, found := strings.CutSuffix(id, "."+parts[1]); found && name != "" {
				return nil
			}
		}
	}
	for _, dns := range cert.DNSNames {
		named = append(named, "DNS:"+dns)
		if dns == id && (ns == "" || strings.HasSuffix(id, "."+ns)) {
			return nil
		}
	}
	return status.Errorf(codes.PermissionDenied, "node identity: node %q (namespace %q) is not one the client certificate names (%s); "+
		"see --xds-identity-check", id, ns, strings.Join(named, ", "))
}

// labelsCertified holds a node's claimed labels (node metadata LABELS) to those its certificate carries, if it
// carries any (the workload CA's certificate for a pod does: workloadca.CertifiedLabels): the same set, no label
// more or less, or a pod could enter or leave a TopicBinding's pod selector at will.
func labelsCertified(cert *x509.Certificate, node *corev3.Node) error {
	certified, ok, err := workloadca.CertifiedLabels(cert)
	if err != nil {
		return status.Error(codes.PermissionDenied, "node identity: "+err.Error())
	}
	if !ok {
		return nil
	}
	claimed := cache.ProxyOf(node).Labels
	if len(claimed) == 0 && len(certified) == 0 || maps.Equal(claimed, certified) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "node identity: node %q claims the labels %v, its pod's certificate says %v; "+
		"a sidecar sends its pod's labels as they were at its start: restart the pod after relabelling it", node.GetId(), claimed, certified)
}

// callbacks puts the check in front of next: it takes each stream's certificate when it opens and checks the node
// of every request; a delta request that leaves the node out speaks for the node last checked on its stream
// (go-control-plane fills it in after the callback, from the last node sent).
func (c *IdentityCheck) callbacks(next gcpserver.Callbacks) gcpserver.Callbacks {
	return &identityCallbacks{Callbacks: next, check: c}
}

type identityCallbacks struct {
	gcpserver.Callbacks
	check *IdentityCheck
}

func (c *IdentityCheck) open(ctx context.Context, key identityKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peers[key] = &peerIdentity{cert: clientCertificate(ctx)}
}

func (c *IdentityCheck) close(key identityKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.peers, key)
}

func (c *IdentityCheck) permits(key identityKey, node *corev3.Node) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[key]
	if p == nil {
		p = &peerIdentity{}
	}
	if node == nil {
		node = p.node
	}
	if err := c.judge(p.cert, node); err != nil {
		return err
	}
	p.node = node
	return nil
}

func (c *IdentityCheck) judge(cert *x509.Certificate, node *corev3.Node) error {
	err := Permits(cert, node)
	if err != nil {
		c.refused.Inc()
		c.log.Info("xDS request refused", "node", node.GetId(), "err", status.Convert(err).Message())
	}
	return err
}

func (cb *identityCallbacks) OnStreamOpen(ctx context.Context, id int64, typeURL string) error {
	cb.check.open(ctx, identityKey{id: id})
	return cb.Callbacks.OnStreamOpen(ctx, id, typeURL)
}

func (cb *identityCallbacks) OnStreamClosed(id int64, node *corev3.Node) {
	cb.check.close(identityKey{id: id})
	cb.Callbacks.OnStreamClosed(id, node)
}

func (cb *identityCallbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	if err := cb.check.permits(identityKey{id: id}, req.GetNode()); err != nil {
		return err
	}
	return cb.Callbacks.OnStreamRequest(id, req)
}

func (cb *identityCallbacks) OnDeltaStreamOpen(ctx context.Context, id int64, typeURL string) error {
	cb.check.open(ctx, identityKey{delta: true, id: id})
	return cb.Callbacks.OnDeltaStreamOpen(ctx, id, typeURL)
}

func (cb *identityCallbacks) OnDeltaStreamClosed(id int64, node *corev3.Node) {
	cb.check.close(identityKey{delta: true, id: id})
	cb.Callbacks.OnDeltaStreamClosed(id, node)
}

func (cb *identityCallbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	if err := cb.check.permits(identityKey{delta: true, id: id}, req.GetNode()); err != nil {
		return err
	}
	return cb.Callbacks.OnStreamDeltaRequest(id, req)
}

// OnFetchRequest checks a REST-style fetch, which has no stream: its context holds its certificate.
func (cb *identityCallbacks) OnFetchRequest(ctx context.Context, req *discovery.DiscoveryRequest) error {
	if err := cb.check.judge(clientCertificate(ctx), req.GetNode()); err != nil {
		return err
	}
	return cb.Callbacks.OnFetchRequest(ctx, req)
}

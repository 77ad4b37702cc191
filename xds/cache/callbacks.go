package cache

import (
	"context"
	"regexp"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	deltaserver "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	restserver "github.com/envoyproxy/go-control-plane/pkg/server/rest/v3"
	sotwserver "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	gcpserver "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// asked is what a request subscribes to, unsubscribes from and declares it holds.
type asked struct {
	subscribe, unsubscribe []string
	initial                map[string]string
}

// decision is what a request says of the responses before it: the nonce it answers, the version it holds (state
// of the world only), and whether it rejects that response, with what error.
type decision struct {
	nonce, version, errorDetail string
	rejects                     bool
}

// onRequest records a request before go-control-plane hands it to a watch: its stream (for the watch), whether
// it is stale, and the client's decision on a response (ACK or NACK).
func (c *Cache) onRequest(key streamKey, req any, typeURL string, d decision, names asked) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[key]
	if st == nil {
		return nil
	}
	defer c.noteStreams() // a node named, a subscription, an ACK or a NACK
	if typeURL == "" {
		typeURL = st.defaultType // a per-type delta stream's request; go-control-plane fills the type in after this callback
	}
	for _, r := range st.requests { // a request the server skipped (a stale nonce) never reached its watch
		delete(c.pending, r)
	}
	st.requests = st.requests[:0]
	known := Known(typeURL)
	if !known { // counted, so that go-control-plane's watch per type cannot grow without bound
		if len(typeURL) > MaxNameLength {
			return status.Errorf(codes.InvalidArgument, "type URL of %d bytes: the limit is %d", len(typeURL), MaxNameLength)
		}
		if _, ok := st.unknown[typeURL]; !ok {
			if len(st.unknown) >= MaxUnknownTypes {
				return status.Errorf(codes.ResourceExhausted, "more than %d types rocketpilot does not serve on one stream (%q)", MaxUnknownTypes, typeURL)
			}
			st.unknown[typeURL] = map[string]struct{}{}
		}
	}
	if err := c.checkLocked(st, typeURL, names); err != nil {
		return err
	}
	if !known {
		c.pending[req] = pendingRequest{key: key}
		st.requests = append(st.requests, req)
		return nil // no status, no decisions: nothing is sent that a client could decide on
	}
	ts := st.status(typeURL)
	// The protocol: a state-of-the-world request whose nonce is not the latest sent for its type is stale and not
	// answered. go-control-plane skips only those that arrive before the client answered the latest response.
	stale := !st.delta && d.nonce != "" && ts.sentNonce != "" && d.nonce != ts.sentNonce
	c.pending[req] = pendingRequest{key: key, stale: stale}
	st.requests = append(st.requests, req)
	if stale {
		return nil
	}
	passed, r, ok := ts.decided(d.nonce)
	if !ok {
		return nil // no decision: a first request, a subscription change, or a nonce no response of the type had
	}
	if d.rejects {
		ts.inflight[0].rejected = true // what it carried is not accepted, even when a later response is
		if typeURL == translate.ClusterType {
			// Envoy applies each cluster of a response on its own and names those it rejects: the others are in.
			c.accept(st, typeURL, passed, sentResponse{carries: r.carries.appliedDespite(d.errorDetail, st.accepted[typeURL])})
		}
		if isClusterType(typeURL) {
			c.releaseHeld(st.node) // a node's first config waits no more for what it rejected (gate.go)
		}
		ts.nackNonce, ts.nackError, ts.rejectedVersion, ts.rejectedTopics, ts.nackSeq = d.nonce, d.errorDetail, r.version, r.topics, ts.seq
		missingBefore := ts.missingExtension
		ts.missingExtension = MissingExtension(d.errorDetail)
		ts.nacks++
		c.activity.nacks.Add(1)
		ts.holdUntil = time.Now().Add(c.opts.NackBackoff << min(ts.nacks-1, 5))
		c.metrics.of(typeURL).nacks.Inc()
		c.noteRejections()
		if ts.missingExtension != "" {
			// Not the config's fault: the sidecar cannot run it. No TopicRoute is blamed (Rejections leaves it out).
			// Logged when it starts, not at every retry after the backoff.
			if ts.missingExtension != missingBefore {
				c.opts.Logger.Error("sidecar lacks an extension its config needs: give it a build that has it (for the RocketMQ filter, Envoy 1.28 or later with the contrib extensions)",
					"node", nodeID(st), "type", typeURL, "extension", ts.missingExtension, "error", d.errorDetail)
			}
			return nil
		}
		c.opts.Logger.Warn("xDS response rejected", "node", nodeID(st), "type", typeURL, "version", r.version, "error", d.errorDetail,
			"nacksInARow", ts.nacks, "retryIn", time.Until(ts.holdUntil).Round(time.Millisecond))
		return nil
	}
	if !st.delta && d.version != r.version {
		return nil // a state-of-the-world request that still holds an earlier version accepts nothing
	}
	ts.ackedVersion, ts.ackedNonce = r.version, d.nonce
	if isClusterType(typeURL) {
		c.accept(st, typeURL, passed, r)
	}
	if ts.nackNonce != "" && r.seq <= ts.nackSeq && d.nonce != ts.nackNonce {
		return nil // accepted a response sent before the rejection arrived: it says nothing of what was rejected
	}
	if ts.nackNonce != "" {
		c.noteRejections()
	}
	ts.nackNonce, ts.nackError, ts.rejectedVersion, ts.rejectedTopics, ts.missingExtension = "", "", "", nil, ""
	ts.nacks, ts.holdUntil = 0, time.Time{}
	return nil
}

// decided finds the response a client's decision names. Every earlier one leaves the in-flight list (a client
// decides on responses in order); the one named stays, so that a client may take its decision back (an ACK of the
// nonce it rejected). For state of the world only the latest counts (others are stale); a delta client may reject
// an older response after a newer one went out.
// It returns the responses passed over without a decision, and the one decided.
func (ts *typeStatus) decided(nonce string) ([]sentResponse, sentResponse, bool) {
	if nonce == "" {
		return nil, sentResponse{}, false
	}
	i := slices.IndexFunc(ts.inflight, func(r sentResponse) bool { return r.nonce == nonce })
	if i < 0 {
		return nil, sentResponse{}, false
	}
	passed := slices.Clone(ts.inflight[:i])
	ts.inflight = slices.Delete(ts.inflight, 0, i)
	return passed, ts.inflight[0], true
}

// checkLocked refuses a request that would take a stream past its limits: more than MaxSubscriptions names of
// one type, or a name longer than MaxNameLength. The error ends the stream with its gRPC code.
func (c *Cache) checkLocked(st *stream, typeURL string, names asked) error {
	for _, name := range names.subscribe {
		if len(name) > MaxNameLength {
			return status.Errorf(codes.InvalidArgument, "resource name of %d bytes: the limit is %d", len(name), MaxNameLength)
		}
	}
	limit := c.opts.MaxSubscriptions
	if len(names.initial) > limit {
		return status.Errorf(codes.ResourceExhausted, "%d initial resource versions of %s: the limit is %d", len(names.initial), typeURL, limit)
	}
	var subscribed map[string]struct{} // a delta request changes the subscription; a state-of-the-world one replaces it
	if st.delta && Known(typeURL) {
		subscribed = st.subs[typeURL]
	} else if st.delta {
		subscribed = st.unknown[typeURL]
	}
	if len(subscribed)+len(names.subscribe) <= limit {
		return nil // the common case, decided without counting
	}
	want := make(map[string]struct{}, len(subscribed)+len(names.subscribe))
	for name := range subscribed {
		want[name] = struct{}{}
	}
	for _, name := range names.subscribe {
		if name != "*" {
			want[name] = struct{}{}
		}
	}
	for _, name := range names.unsubscribe {
		delete(want, name)
	}
	if len(want) > limit {
		return status.Errorf(codes.ResourceExhausted, "%d subscribed names of %s on one stream: the limit is %d", len(want), typeURL, limit)
	}
	return nil
}

func nodeID(st *stream) string {
	if st.node == nil {
		return ""
	}
	return st.node.id
}

// onResponse records a response go-control-plane is about to send: its nonce, and what the cache knew of it
// when it queued it.
func (c *Cache) onResponse(key streamKey, typeURL, nonce, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[key]
	if st == nil {
		return
	}
	c.activity.pushes.Add(1)
	defer c.noteStreams()
	if !Known(typeURL) {
		c.metrics.sent(typeURL, time.Time{})
		return
	}
	ts := st.status(typeURL)
	var q queuedResponse
	for i, e := range ts.queued { // state of the world drops a response queued to a watch a new request replaced
		if st.delta || e.version == version {
			q, ts.queued = e, ts.queued[i+1:]
			break
		}
	}
	ts.seq++
	ts.sentNonce, ts.sentVersion, ts.sentAt = nonce, version, time.Now()
	carries := q.carries
	if len(ts.inflight) == maxInflight {
		switch { // what accepting a later one implies
		case ts.inflight[0].rejected:
		case len(ts.inflight) > 1:
			ts.inflight[1].carries = ts.inflight[0].carries.then(ts.inflight[1].carries)
		default:
			carries = ts.inflight[0].carries.then(carries)
		}
		ts.inflight = slices.Delete(ts.inflight, 0, 1)
	}
	ts.inflight = append(ts.inflight, sentResponse{nonce: nonce, version: version, seq: ts.seq, topics: q.topics, carries: carries})
	c.metrics.sent(typeURL, q.pushedAt)
}

// Callbacks for go-control-plane's delta and state-of-the-world servers. xds/server hands the cache to
// go-control-plane's server as both its cache and its callbacks.
var (
	_ gcpserver.Callbacks   = (*Cache)(nil)
	_ sotwserver.Callbacks  = (*Cache)(nil) // OnStreamOpen, OnStreamClosed, OnStreamRequest, OnStreamResponse
	_ deltaserver.Callbacks = (*Cache)(nil) // OnDeltaStreamOpen, OnDeltaStreamClosed, OnStreamDeltaRequest, OnStreamDeltaResponse
	_ restserver.Callbacks  = (*Cache)(nil) // OnFetchRequest, OnFetchResponse: nothing to record
)

func (c *Cache) OnDeltaStreamOpen(_ context.Context, id int64, typeURL string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.newStream(streamKey{delta: true, id: id}, true).defaultType = typeURL
	return nil
}

func (c *Cache) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.closeStream(streamKey{delta: true, id: id})
}

func (c *Cache) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	return c.onRequest(streamKey{delta: true, id: id}, req, req.GetTypeUrl(),
		decision{nonce: req.GetResponseNonce(), errorDetail: req.GetErrorDetail().GetMessage(), rejects: req.GetErrorDetail() != nil},
		asked{req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetInitialResourceVersions()})
}

func (c *Cache) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.onResponse(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (c *Cache) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.newStream(streamKey{id: id}, false)
	return nil
}

func (c *Cache) OnStreamClosed(id int64, _ *corev3.Node) { c.closeStream(streamKey{id: id}) }

func (c *Cache) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	return c.onRequest(streamKey{id: id}, req, req.GetTypeUrl(), decision{nonce: req.GetResponseNonce(), version: req.GetVersionInfo(),
		errorDetail: req.GetErrorDetail().GetMessage(), rejects: req.GetErrorDetail() != nil}, asked{subscribe: req.GetResourceNames()})
}

func (c *Cache) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.onResponse(streamKey{id: id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c *Cache) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error { return nil }

func (c *Cache) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

// Envoy's words for a config naming an extension its build does not have, from Config::Utility::getAndCheckFactory
// and its variants (source/common/config/utility.h): by name and type URL (an ECDS config, or a listener with its
// filter inline; the type URL is empty for a filter with no typed config, as an Envoy older than 1.28 sees a
// filter configured by ECDS), by name only, or by type only; and the HTTP filter chain's check of a
// config_discovery type URL (source/common/http/filter_chain_helper.h), which says the same of another filter kind.
var missingExtensionErrors = []*regexp.Regexp{
	regexp.MustCompile(`Didn't find a registered implementation for '([^']*)' with type URL: '([^']*)'`),
	regexp.MustCompile(`Didn't find a registered implementation for (?:name|type): '([^']*)'`),
	regexp.MustCompile(`no factory found for a required type URL ([^\s]+?)\.?(?:\s|$)`),
}

// MissingExtension returns the extension a NACK's error says the client lacks (its type URL when Envoy gives one,
// else its name), or "" when the error says something else.
func MissingExtension(errorDetail string) string {
	for _, re := range missingExtensionErrors {
		if m := re.FindStringSubmatch(errorDetail); m != nil {
			for i := len(m) - 1; i > 0; i-- {
				if m[i] != "" {
					return m[i]
				}
			}
		}
	}
	return ""
}

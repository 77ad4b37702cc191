package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcpcache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// The state-of-the-world responder: every answer lists the whole subscription, versioned by a hash of its
// resources' names and versions; a request that names that version already holds it.

// CreateWatch implements cache.ConfigWatcher for state-of-the-world streams.
func (c *Cache) CreateWatch(req *gcpcache.Request, _ gcpcache.Subscription, ch chan gcpcache.Response) (func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, stale := c.streamOf(req, req.GetNode())
	if !Known(req.GetTypeUrl()) {
		// Answered with no resources, as an unknown name would be. Nothing will change: no watch is kept.
		if req.GetVersionInfo() != emptySotwVersion {
			select {
			case ch <- &gcpcache.PassthroughResponse{Request: req, ReturnedResources: map[string]string{},
				DiscoveryResponse: &discovery.DiscoveryResponse{VersionInfo: emptySotwVersion, TypeUrl: req.GetTypeUrl()}}:
			default:
			}
		}
		return func() {}, nil
	}
	w := &watch{typeURL: req.GetTypeUrl(), node: st.node, stream: st, sotwReq: req, sotwCh: ch}
	if last := st.lastSotw[w.typeURL]; stale && last != nil {
		w.sotwReq = last // ignored: the watch answers as the last current request's would
	} else {
		st.lastSotw[w.typeURL] = req
		c.noteRefused(st, w.typeURL, req.GetResourceNames())
		c.subscribeSotw(st, req)
	}
	return c.register(w), nil
}

// respondSotw answers a state-of-the-world watch with every resource of its subscription, unless the client
// holds that state already (its version_info names it) or rejected it.
func (c *Cache) respondSotw(w *watch) bool {
	st := w.stream
	names := slices.Collect(maps.Keys(st.subs[w.typeURL]))
	if st.status(w.typeURL).wildcard {
		view := c.wildcard(w.typeURL, st)
		c.inView(st, view)
		names = append(names, view...)
		if st.resumed[w.typeURL] {
			names = append(names, c.mayStillRoute(st)...)
		} else if held := st.held[w.typeURL]; len(held) > 0 {
			inView := setOf(view)
			for name := range held {
				if _, ok := inView[name]; !ok && c.keep(st, w.typeURL, name) { // an answer that left it out would remove it
					names = append(names, name)
				}
			}
		}
	}
	resp, version, returned, ok := c.sotwResponse(w, names, false)
	if !ok {
		return false
	}
	select {
	case w.sotwCh <- resp:
	default:
		return false
	}
	w.done = true // from here on resp is the server's: the cache reads only its own copies
	var routes []string
	var carries *clusterChange
	switch {
	case w.typeURL == translate.RouteType:
		routes = slices.Collect(maps.Keys(returned))
	case isClusterType(w.typeURL):
		carries = &clusterChange{whole: true, set: maps.Clone(returned)}
	}
	c.queued(w, version, routes, carries)
	if isClusterType(w.typeURL) {
		st.held[w.typeURL] = returned
		delete(st.resumed, w.typeURL)
	}
	return true
}

// emptySotwVersion is the version of a state-of-the-world answer with no resources.
var emptySotwVersion = sotwVersion(nil)

// sotwVersion is a state-of-the-world answer's version_info: a hash of its resources' names and versions.
func sotwVersion(rs []*resource) string {
	h := sha256.New()
	for _, r := range rs {
		h.Write([]byte(r.name))
		h.Write([]byte{0})
		h.Write([]byte(r.version))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// sotwResponse builds the state-of-the-world answer for names, with its version and a copy of the names and versions
// it returns. Unless always, it reports false when the client already has this exact state (its version_info
// matches), or when this is the state the client rejected.
func (c *Cache) sotwResponse(w *watch, names []string, always bool) (gcpcache.Response, string, map[string]string, bool) {
	slices.Sort(names)
	names = slices.Compact(names)
	var rs []*resource
	for _, name := range names {
		if r := c.lookupFor(w, name); r != nil {
			rs = append(rs, r)
		}
	}
	version := sotwVersion(rs)
	if !always {
		if w.sotwReq.GetVersionInfo() == version {
			if isClusterType(w.typeURL) {
				held := make(map[string]string, len(rs)) // the client provably holds exactly these
				for _, r := range rs {
					held[r.name] = r.version
				}
				w.stream.held[w.typeURL] = held
				w.stream.accepted[w.typeURL] = maps.Clone(held) // its request names the version: it accepted it
				delete(w.stream.resumed, w.typeURL)
			}
			return nil, "", nil, false
		}
		if ts := w.stream.status(w.typeURL); ts.nackNonce != "" && ts.rejectedVersion == version {
			return nil, "", nil, false // rejected: keep the last good state until something changes
		}
	}
	out := &discovery.DiscoveryResponse{VersionInfo: version, TypeUrl: w.typeURL}
	returned := make(map[string]string, len(rs))
	for _, r := range rs {
		out.Resources = append(out.Resources, r.sotwMember(w.typeURL))
		returned[r.name] = r.version
	}
	resp := &gcpcache.PassthroughResponse{Request: w.sotwReq, DiscoveryResponse: out, ReturnedResources: maps.Clone(returned)}
	return resp, version, returned, true
}

// Fetch answers a REST (state-of-the-world, no watch) request with the current resources.
func (c *Cache) Fetch(_ context.Context, req *gcpcache.Request) (gcpcache.Response, error) {
	if !Known(req.GetTypeUrl()) {
		return nil, unknownType(req.GetTypeUrl())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.newStream(streamKey{id: c.nextAnon()}, false)
	st.node = c.nodeFor(req.GetNode())
	st.node.streams[st] = struct{}{}
	defer c.closeStreamLocked(st)
	w := &watch{typeURL: req.GetTypeUrl(), node: st.node, stream: st, sotwReq: req}
	names := req.GetResourceNames()
	if len(names) == 0 {
		names = c.wildcard(w.typeURL, st)
	}
	resp, _, _, _ := c.sotwResponse(w, names, true)
	return resp, nil
}

// Package sidecaradmin is the API of `rocketpilot sidecar`'s admin listener beside its probes and metrics:
//
//	GET /api/v1/sidecar   one sidecar as its operator sees it: node, xDS server, readiness, groups, routes, Pop mode
//
// Any other path under /api/v1/ is answered 404 with the control plane's JSON error body (server.ErrorBody). The
// response type is defined here once, written by the sidecar and read back by `rocketctl describe sidecar`.
package sidecaradmin

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// Path is where the sidecar's status is served.
const Path = "/api/v1/sidecar"

// Sidecar is GET /api/v1/sidecar.
type Sidecar struct {
	// Node is the node id the sidecar gives the control plane (--node-id).
	Node string `json:"node"`
	// XDSServer is the control plane's xDS server the sidecar follows (--xds-server).
	XDSServer string `json:"xdsServer"`
	// Ready is what /readyz answers: an xDS stream to the control plane was opened once, and the sidecar is not
	// draining. It stays true while the control plane is away: the sidecar routes by its last routes.
	Ready bool `json:"ready"`
	// Connected is true while an xDS stream to the control plane is open.
	Connected bool `json:"connected"`
	Draining  bool `json:"draining"`
	// Streams is how many xDS streams the sidecar has opened (reconnects add one); NACKs how many responses it
	// rejected.
	Streams int `json:"xdsStreams"`
	NACKs   int `json:"nacks"`
	// Listen is the NameServer address the application is given.
	Listen string `json:"listen"`
	// Groups are the broker groups the sidecar has seen, each at its port, by name.
	Groups []Group `json:"groups"`
	// Routes is how many topics' served routes the sidecar holds.
	Routes int `json:"routes"`
	// Pop is the Pop mode counts of every consumer group the sidecar served in Pop mode, by group name.
	Pop     []dataplane.PopStats `json:"pop"`
	Version string               `json:"version"`
}

// Group is one broker group as the application sees it: the sidecar's port for it.
type Group struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Handler serves Path with what status returns, and 404 with an error body for any other path under /api/v1/.
func Handler(status func() Sidecar) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, _ *http.Request) {
		s := status()
		if s.Groups == nil {
			s.Groups = []Group{} // empty lists, not null
		}
		if s.Pop == nil {
			s.Pop = []dataplane.PopStats{}
		}
		write(w, http.StatusOK, s)
	})
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Path {
			w.Header().Set("Allow", "GET, HEAD")
			write(w, http.StatusMethodNotAllowed, server.ErrorBody{Error: Path + " is read-only: GET it"})
			return
		}
		write(w, http.StatusNotFound, server.ErrorBody{Error: "no " + strconv.Quote(r.URL.Path) + " in a sidecar's admin API: it serves " + Path})
	})
	return mux
}

// write answers v as JSON, as the control plane's admin API does: indented when OK, an error body on one line.
func write(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	if code == http.StatusOK {
		enc.SetIndent("", "  ")
	}
	enc.Encode(v)
}

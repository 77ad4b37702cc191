package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"

	"github.com/rocketpilot/rocketpilot/internal/sidecaradmin"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// sidecarStatus reads a Go sidecar's status from its admin listener (--server). A server without it is named: the
// control plane's admin API, the usual mistake, or something else; either way not what describe sidecar reads.
func (g *globals) sidecarStatus(ctx context.Context) (*sidecaradmin.Sidecar, error) {
	var s sidecaradmin.Sidecar
	err := g.getJSON(ctx, sidecaradmin.Path, nil, &s)
	var nf errNotFound
	var other notRocketpilotError
	switch {
	case errors.As(err, &other) && other.code == http.StatusNotFound: // a server without the path: not a sidecar
		nf.msg = other.said
	case !errors.As(err, &nf):
		return &s, err
	}
	const want = "give --server a sidecar's --admin-address (rocketpilot sidecar's default is 127.0.0.1:15000)"
	var v server.VersionInfo
	if g.getJSON(ctx, "/api/v1/version", nil, &v) == nil && v.Version != "" {
		return nil, fmt.Errorf("%s is rocketpilot's control-plane admin API (version %s, model version %d), not a sidecar's: %s",
			g.server, v.Version, v.ModelVersion, want)
	}
	return nil, fmt.Errorf("%s has no %s (404: %s): not a Go sidecar's admin listener, or a sidecar older than this rocketctl; %s",
		g.server, sidecaradmin.Path, nf.msg, want)
}

// describeSidecar writes a sidecar's status as describe topic writes a topic: fields, then sections; a section
// with nothing in it is a field saying none, aligned with the others.
func describeSidecar(w io.Writer, s *sidecaradmin.Sidecar) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	const width = len("Broker groups:") + 2
	field := func(label, value string) { p("%-*s%s", width, label+":", value) }
	yesNo := func(b bool, no string) string {
		if b {
			return "yes"
		}
		return no
	}
	field("Node", s.Node)
	field("Version", s.Version)
	field("xDS server", s.XDSServer)
	ready := yesNo(s.Ready, "no (no xDS stream to the control plane yet)")
	if s.Draining {
		ready = "no (draining)"
	}
	field("Ready", ready)
	field("Connected", yesNo(s.Connected, "no (routing by its last routes until the control plane is back)"))
	field("xDS streams", fmt.Sprintf("%d opened, %d responses rejected (NACK)", s.Streams, s.NACKs))
	field("Listen", s.Listen)
	field("Routes held", strconv.Itoa(s.Routes))
	section := func(label, header string, rows []string) { // a table, or none
		if len(rows) == 0 {
			field(label, "none")
			return
		}
		p("%s:", label)
		for _, r := range append([]string{header}, rows...) {
			p("  %s", r)
		}
	}
	var groups, pop []string
	for _, gr := range s.Groups {
		groups = append(groups, gr.Name+"\t"+gr.Address)
	}
	for _, ps := range s.Pop {
		pop = append(pop, fmt.Sprintf("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d", ps.Group, ps.Popped, ps.Redelivered, ps.Acked, ps.AckFailed,
			ps.SentBack, ps.Released, ps.InFlight))
	}
	section("Broker groups", "GROUP\tPORT", groups)
	section("Pop mode", "GROUP\tPOPPED\tREDELIVERED\tACKED\tACK-FAILED\tSENT-BACK\tRELEASED\tIN-FLIGHT", pop)
	return tw.Flush()
}

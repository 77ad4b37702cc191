package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rocketpilot/rocketpilot/xds/server"
)

func newVersionCommand(g *globals) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client's version and the server's",
		RunE: func(cmd *cobra.Command, _ []string) error {
			type versions struct {
				Client string `json:"client"`
				Go     string `json:"go"`
				Server string `json:"server,omitempty"`
				Model  uint64 `json:"modelVersion,omitempty"`
				// WaitingFor is what a server that holds xDS back waits for (its first sync).
				WaitingFor []string `json:"waitingFor,omitempty"`
			}
			v := versions{Client: version, Go: runtime.Version()}
			var err error
			if !clientOnly {
				var s server.VersionInfo
				if err = g.getJSON(cmd.Context(), "/api/v1/version", nil, &s); err == nil {
					v.Server, v.Model, v.WaitingFor = s.Version, s.ModelVersion, s.WaitingFor
				}
			}
			switch g.output {
			case "json":
				if perr := printJSON(g.out, v); perr != nil {
					return perr
				}
			case "yaml":
				if perr := printYAML(g.out, v); perr != nil {
					return perr
				}
			default:
				fmt.Fprintf(g.out, "Client: %s (%s)\n", v.Client, v.Go)
				if v.Server != "" {
					fmt.Fprintf(g.out, "Server: %s (model version %d)\n", v.Server, v.Model)
				}
				if len(v.WaitingFor) > 0 { // a warning, as kubectl's: on stderr
					fmt.Fprintf(g.errOut, "The server is not serving xDS yet; it waits for %s\n", strings.Join(v.WaitingFor, "; "))
				}
			}
			return err // the client's version is printed even when the server cannot be reached
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "the client's version only")
	addOutput(cmd, g, "text", "json", "yaml")
	return cmd
}

// unsyncedHint adds to a "not found" what a server that has not done its first sync waits for: the topic may be
// one it does not know yet.
func (g *globals) unsyncedHint(ctx context.Context, err error) error {
	var nf errNotFound
	if !errors.As(err, &nf) {
		return err
	}
	var v server.VersionInfo
	if g.getJSON(ctx, "/api/v1/version", nil, &v) != nil || len(v.WaitingFor) == 0 {
		return err
	}
	return fmt.Errorf("%w; the server has not done its first sync: it waits for %s", err, strings.Join(v.WaitingFor, "; "))
}

package main

import (
	"fmt"
	"runtime"

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
			}
			v := versions{Client: version, Go: runtime.Version()}
			var err error
			if !clientOnly {
				var s server.VersionInfo
				if err = g.getJSON(cmd.Context(), "/api/v1/version", nil, &s); err == nil {
					v.Server, v.Model = s.Version, s.ModelVersion
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
			}
			return err // the client's version is printed even when the server cannot be reached
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "the client's version only")
	addOutput(cmd, g, "text", "json", "yaml")
	return cmd
}

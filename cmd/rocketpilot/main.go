// Command rocketpilot is the control plane: it learns RocketMQ topic routes from NameServers into the routing
// model. `rocketpilot serve --demo` runs it against an embedded, simulated NameServer.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "rocketpilot:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "rocketpilot",
		Short:         "An xDS control plane that makes Apache RocketMQ service-mesh ready",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newSidecarCommand(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "rocketpilot", version)
		},
	})
	return root
}

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

func newResolveCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resolve TOPIC",
		Short: "Act as a Go sidecar and print the TopicRouteData a RocketMQ client would receive",
		Long: `resolve subscribes to the topic's route over xDS (--xds-server) with the public Go sidecar client, as a
sidecar does, and prints the TopicRouteData it rebuilds from the route and the cluster's endpoints: what a
RocketMQ client asking its sidecar for the route (code 105) would get.`,
		Example: `  rocketctl resolve TopicTest`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dopts, err := g.xdsDialOptions()
			if err != nil {
				return err
			}
			c, err := sidecar.Dial(g.xds, sidecar.Options{NodeID: "rocketctl", DialOptions: dopts})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.withTimeout(cmd.Context())
			defer cancel()
			route, err := c.Resolve(ctx, args[0])
			switch {
			case errors.Is(err, sidecar.ErrTopicNotFound):
				return fmt.Errorf("topic %q not found: the control plane has no route for it", args[0])
			case errors.Is(err, context.DeadlineExceeded):
				return fmt.Errorf("no answer from the xDS server at %s within %s (set --xds-server or ROCKETCTL_XDS_SERVER)", g.xds, g.timeout)
			case err != nil:
				return err
			}
			return printJSON(g.out, route)
		},
	}
}

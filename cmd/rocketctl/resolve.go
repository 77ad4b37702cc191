package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

func newResolveCommand(g *globals) *cobra.Command {
	var watch bool
	var nodeID string
	cmd := &cobra.Command{
		Use:   "resolve TOPIC",
		Short: "Act as a Go sidecar and print the TopicRouteData a RocketMQ client would receive",
		Long: `resolve subscribes to the topic's route over xDS with the public Go sidecar client, as a sidecar does,
and prints the TopicRouteData it rebuilds from the route and the cluster's endpoints: what a RocketMQ client
asking its sidecar for the route (code 105) would get. The xDS server is --xds-server, or, when that is not
given, the one the admin API at --server names. A server that has not done its first sync (and so serves no
xDS yet) is reported at once, with what it waits for.`,
		Example: `  rocketctl resolve TopicTest
  rocketctl resolve TopicTest --watch
  rocketctl --server 10.0.0.7:19000 resolve TopicTest`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dopts, err := g.xdsDialOptions()
			if err != nil {
				return err
			}
			explicit := cmd.Flags().Changed("xds-server") || os.Getenv("ROCKETCTL_XDS_SERVER") != ""
			var v server.VersionInfo
			ask := g
			if explicit { // the admin API is only a courtesy then: not worth waiting the whole request timeout for
				quick := *g
				quick.timeout = min(g.timeout, 2*time.Second)
				if quick.timeout <= 0 {
					quick.timeout = 2 * time.Second
				}
				ask = &quick
			}
			switch err := ask.getJSON(cmd.Context(), "/api/v1/version", nil, &v); {
			case err == nil && len(v.WaitingFor) > 0:
				return fmt.Errorf("the control plane at %s serves no xDS yet: it waits for %s", g.server, strings.Join(v.WaitingFor, "; "))
			case err == nil && !explicit && v.XDSAddress != "":
				g.xds = xdsAddressFor(g.server, v.XDSAddress)
			case err != nil && !explicit:
				return fmt.Errorf("%w (resolve learns the xDS address there; give --xds-server to go without it)", err)
			}
			c, err := sidecar.Dial(g.xds, sidecar.Options{NodeID: nodeID, DialOptions: dopts})
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := g.withTimeout(cmd.Context())
			defer cancel()
			route, err := c.Resolve(ctx, args[0])
			switch {
			case cmd.Context().Err() != nil:
				return nil // interrupted
			case errors.Is(err, sidecar.ErrTopicNotFound):
				return fmt.Errorf("topic %q not found: the control plane has no route for it", args[0])
			case errors.Is(err, context.DeadlineExceeded):
				return fmt.Errorf("no answer from the xDS server at %s within %s (set --xds-server or ROCKETCTL_XDS_SERVER)", g.xds, g.timeout)
			case err != nil:
				return err
			}
			if err := printJSON(g.out, route); err != nil || !watch {
				return err
			}
			return watchRoute(cmd.Context(), g, c, args[0], route)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after the route, print it again whenever it changes, until interrupted")
	cmd.Flags().StringVar(&nodeID, "node-id", "rocketctl", "the node id of the xDS stream: under mutual TLS, rocketpilot's identity check wants one that --tls-cert names (as a DNS name, say)")
	return cmd
}

// watchRoute prints the topic's route each time the control plane changes it, as the sidecar client sees the
// change, until ctx ends (Ctrl-C: no error). A topic withdrawn is said on stderr; the watch goes on.
func watchRoute(ctx context.Context, g *globals, c *sidecar.Client, topic string, last *remoting.TopicRouteData) error {
	changes := make(chan *remoting.TopicRouteData, 1) // the newest route only: a printer behind skips to it
	gone := make(chan error, 16)
	cancel := c.Watch(topic, func(data *remoting.TopicRouteData, err error) {
		if err != nil {
			select {
			case gone <- err:
			default:
			}
			return
		}
		for {
			select {
			case changes <- data:
				return
			default: // the printer is behind: the older route it has not taken gives way to this one
				select {
				case <-changes:
				default:
				}
			}
		}
	})
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-gone:
			fmt.Fprintf(g.errOut, "topic %q: %v\n", topic, err)
			last = nil // the route, when it comes back, is printed even if it is the same
		case data := <-changes:
			if reflect.DeepEqual(data, last) { // the first call, or a change that left the route as it was
				continue
			}
			last = data
			if err := printJSON(g.out, data); err != nil {
				return err
			}
		}
	}
}

// xdsAddressFor is the address to dial for the xDS listener an admin API at adminURL names: its port, on the
// admin API's host when the listener's host is a wildcard (0.0.0.0, ::) or loopback seen from elsewhere.
func xdsAddressFor(adminURL, listener string) string {
	lhost, port, err := net.SplitHostPort(listener)
	if err != nil {
		return listener
	}
	u, err := url.Parse(adminURL)
	if err != nil || u.Host == "" {
		u, err = url.Parse("http://" + adminURL)
	}
	if err != nil || u.Hostname() == "" {
		return listener
	}
	ip := net.ParseIP(lhost)
	if lhost == "" || (ip != nil && (ip.IsUnspecified() || ip.IsLoopback())) {
		return net.JoinHostPort(u.Hostname(), port)
	}
	return listener
}

// Command rocketctl queries and debugs rocketpilot the way kubectl, istioctl proxy-status/proxy-config and egctl
// do: the routing model, the served resources and the connected proxies through rocketpilot's admin API; routes
// as a Go sidecar receives them over xDS; rocketpilot's custom resources through the Kubernetes API; and an offline
// dry run of translation. Installed as kubectl-rocketmq it is also `kubectl rocketmq`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	// Ctrl-C ends a watch without an error; once caught, the signal is let go, so that a second one ends the
	// process whatever it is doing.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line; errors go to stderr and give exit code 1.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	if len(args) > 0 {
		name := filepath.Base(args[0])
		if strings.HasPrefix(name, "kubectl-") {
			root.Use = name // as a kubectl plugin, named as kubectl names it
			root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl " + strings.TrimPrefix(name, "kubectl-")}
		}
		root.SetArgs(args[1:])
	}
	if cmd, err := root.ExecuteContextC(ctx); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		var usage usageError
		if errors.As(err, &usage) || strings.HasPrefix(err.Error(), "unknown command") {
			// As kubectl: what the command takes, and where its help is.
			fmt.Fprintf(stderr, "Usage: %s\nSee '%s --help' for help and examples.\n", cmd.UseLine(), cmd.CommandPath())
		}
		var ex exitError
		if errors.As(err, &ex) {
			return ex.code
		}
		return 1
	}
	return 0
}

// usageError is a command line a command cannot take: a wrong number of arguments, an unknown or malformed flag.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// strictUsage makes every command's argument and flag errors usage errors, and a command that only groups others
// refuse an unknown subcommand (cobra shows such a command's help and succeeds).
func strictUsage(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil && cmd.HasParent() {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, a []string) error {
			if len(a) == 0 {
				return c.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", a[0], c.CommandPath())
			if c.SuggestionsMinimumDistance <= 0 {
				c.SuggestionsMinimumDistance = 2 // cobra's own default, which it sets only for the root's suggestions
			}
			if s := c.SuggestionsFor(a[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, ", ") + "?"
			}
			return usageError{errors.New(msg)}
		}
	}
	for _, sub := range cmd.Commands() {
		strictUsage(sub)
	}
}

type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// globals are the flags every command shares.
type globals struct {
	server    string // admin API
	xds       string // xDS server, for resolve
	output    string
	timeout   time.Duration
	tls       tlsFlags
	kube      kubeFlags
	out       io.Writer
	errOut    io.Writer
	tlsClient *tlsClient // the admin API's HTTP client under TLS, made once (nil: made per request)
}

// tlsClient is an HTTP client made on first use and kept: a transport per request would keep an idle connection
// each (a watch asks every second).
type tlsClient struct {
	once   sync.Once
	client *http.Client
	err    error
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{out: stdout, errOut: stderr, tlsClient: &tlsClient{}}
	root := &cobra.Command{
		Use:           "rocketctl",
		Short:         "Query and debug rocketpilot, the xDS control plane for Apache RocketMQ",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags are parsed on the way down: an unknown flag before the command is named as such, not taken
		// for a flag with a value (which made `rocketctl --bogus get topics` report an unknown command "topics").
		TraverseChildren: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	f := root.PersistentFlags()
	f.StringVar(&g.server, "server", envOr("ROCKETCTL_SERVER", "http://127.0.0.1:19000"), "rocketpilot's admin API (or $ROCKETCTL_SERVER)")
	f.StringVar(&g.xds, "xds-server", envOr("ROCKETCTL_XDS_SERVER", "127.0.0.1:18000"), "rocketpilot's xDS server, for resolve (or $ROCKETCTL_XDS_SERVER)")
	f.DurationVar(&g.timeout, "request-timeout", 10*time.Second, "how long one request may take (0: no limit)")
	f.StringVar(&g.tls.ca, "tls-ca", os.Getenv("ROCKETCTL_TLS_CA"), "PEM CAs that sign rocketpilot's certificate: the admin API (https, whatever --server says) and xDS are reached over TLS (or $ROCKETCTL_TLS_CA)")
	f.StringVar(&g.tls.cert, "tls-cert", os.Getenv("ROCKETCTL_TLS_CERT"), "PEM client certificate, for a rocketpilot serving mutual TLS (or $ROCKETCTL_TLS_CERT)")
	f.StringVar(&g.tls.key, "tls-key", os.Getenv("ROCKETCTL_TLS_KEY"), "PEM key of --tls-cert (or $ROCKETCTL_TLS_KEY)")
	f.StringVar(&g.tls.serverName, "tls-server-name", os.Getenv("ROCKETCTL_TLS_SERVER_NAME"), "name to verify rocketpilot's certificate against (the host of --server or --xds-server when empty)")
	g.kube.addFlags(f)
	root.AddCommand(newGetCommand(g), newDescribeCommand(g), newProxyStatusCommand(g), newProxyConfigCommand(g),
		newResolveCommand(g), newDumpNamesrvCommand(g), newExperimentalCommand(g), newVersionCommand(g), newKubeInjectCommand(g))
	root.AddCommand(newAnalyzeCommand(g))
	root.AddCommand(newDashboardCommand(g))
	addCompletion(root, g)
	addWatch(root, g, "get", "proxy-status")
	strictUsage(root)
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// addOutput adds -o/--output with the formats a command supports, the first being the default.
func addOutput(cmd *cobra.Command, g *globals, formats ...string) {
	cmd.Flags().StringVarP(&g.output, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if !cmd.Flags().Changed("output") {
			g.output = formats[0] // every command binds the same variable: its own default applies
		}
		for _, f := range formats {
			if g.output == f || (f == "table" && g.output == "") {
				return nil
			}
		}
		return fmt.Errorf("--output %q: want one of %s", g.output, strings.Join(formats, ", "))
	}
}

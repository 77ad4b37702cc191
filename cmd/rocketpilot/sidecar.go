package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/rocketpilot/rocketpilot/dashboard"
	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/internal/sidecaradmin"
	"github.com/rocketpilot/rocketpilot/internal/tlsreload"
	"github.com/rocketpilot/rocketpilot/workloadca"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

type sidecarOptions struct {
	xds, listen, brokerHost, node, admin  string
	tlsCA, tlsCert, tlsKey, tlsServerName string
	logLevel, logFormat                   string
	drain                                 time.Duration
	namespace, labelsFile                 string
	labels                                map[string]string
	pprof                                 bool
	caServer, tokenFile                   string
}

func newSidecarCommand() *cobra.Command {
	o := &sidecarOptions{}
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Run the Go data plane that unchanged RocketMQ applications point their NameServer address at",
		Long: `sidecar is a RocketMQ-aware proxy configured by rocketpilot's xDS. The application sets its NameServer
address to --listen; route queries are answered from xDS, on demand, with every broker group at a port of the
sidecar's, and every request is routed by the topic's routes as the control plane serves them: sends to writable
brokers by the send weights and drains, everything else to its broker group.`,
		Example: `  rocketpilot sidecar --xds-server 127.0.0.1:18000 --listen 127.0.0.1:9876`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	host, _ := os.Hostname()
	f.StringVar(&o.xds, "xds-server", "127.0.0.1:18000", "rocketpilot's xDS server")
	f.StringVar(&o.listen, "listen", "127.0.0.1:9876", "the NameServer address the application is given")
	f.StringVar(&o.brokerHost, "broker-host", "127.0.0.1", "the host of the ports the sidecar opens, one per broker group")
	f.StringVar(&o.node, "node-id", host, "the node id the sidecar gives the control plane (TopicBindings select nodes by it)")
	f.StringVar(&o.admin, "admin-address", "127.0.0.1:15000", "listen address of /healthz, /readyz, /metrics and the sidecar's status at /api/v1/sidecar (rocketctl describe sidecar); empty disables it")
	f.BoolVar(&o.pprof, "pprof", false, "serve Go's profiles on the admin address under /debug/pprof/ (keep the admin address on loopback)")
	f.StringVar(&o.namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the pod's namespace, sent as node metadata NAMESPACE (TopicBindings with a pod selector match it)")
	f.StringToStringVar(&o.labels, "labels", nil, "the pod's labels, sent as node metadata LABELS")
	f.StringVar(&o.labelsFile, "labels-file", "", `a Kubernetes downward API file of the pod's labels (key="value" lines), added to --labels`)
	f.DurationVar(&o.drain, "drain-timeout", 10*time.Second, "on SIGTERM, how long new connections are refused while requests in flight are answered")
	f.StringVar(&o.tlsCA, "tls-ca", "", "PEM CAs that sign rocketpilot's certificate: xDS is reached over TLS")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM client certificate, for a rocketpilot serving mutual TLS")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	f.StringVar(&o.caServer, "ca-server", "", "rocketpilot's workload CA (https://HOST:PORT, verified with --tls-ca): instead of --tls-cert, the sidecar gets its client certificate there with its service account token (--token-file), and renews it")
	f.StringVar(&o.tokenFile, "token-file", "/var/run/secrets/rocketpilot/token", "a projected service account token of audience "+workloadca.Audience+", for --ca-server")
	f.StringVar(&o.tlsServerName, "tls-server-name", "", "name to verify rocketpilot's certificate against (the host of --xds-server when empty)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

// dialOptions secures the xDS connection: plaintext, TLS, or mutual TLS with --tls-cert or with the certificate
// of certs (the workload CA's, --ca-server).
func (o *sidecarOptions) dialOptions(certs *workloadca.Source) ([]grpc.DialOption, error) {
	if o.tlsCA == "" && o.tlsCert == "" && o.tlsKey == "" && certs == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	if o.tlsCA == "" {
		return nil, errors.New("--tls-cert and --tls-key, and --ca-server, need --tls-ca")
	}
	cfg, err := tlsreload.ClientConfig(o.tlsCA, o.tlsCert, o.tlsKey, o.tlsServerName)
	if err != nil {
		return nil, err
	}
	if certs != nil {
		cfg.GetClientCertificate = certs.GetClientCertificate
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}

// workloadCertificates starts getting the sidecar's certificate from --ca-server, and renewing it, until ctx ends;
// nil without --ca-server. The first try is made at once: the first xDS connection usually has it.
func (o *sidecarOptions) workloadCertificates(ctx context.Context, log *slog.Logger) (*workloadca.Source, error) {
	if o.caServer == "" {
		return nil, nil
	}
	if o.tlsCert != "" || o.tlsKey != "" {
		return nil, errors.New("--ca-server gives the client certificate: leave out --tls-cert and --tls-key")
	}
	if o.tlsCA == "" {
		return nil, errors.New("--ca-server needs --tls-ca, the CA of rocketpilot's certificate")
	}
	caTLS, err := tlsreload.ClientConfig(o.tlsCA, "", "", o.tlsServerName)
	if err != nil {
		return nil, err
	}
	src := workloadca.NewSource(o.caServer, o.tokenFile, caTLS, log.With("component", "certificates"))
	first, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := src.Fetch(first); err != nil {
		log.Warn("no workload certificate yet; retrying", "err", err)
	}
	go src.Run(ctx, time.Second)
	return src, nil
}

// metadata is the node metadata the sidecar sends: NAMESPACE and LABELS, as an Istio-bootstrapped Envoy's, so that
// TopicBindings select it by pod selector.
func (o *sidecarOptions) metadata() (*structpb.Struct, error) {
	labels := map[string]any{}
	if o.labelsFile != "" {
		b, err := os.ReadFile(o.labelsFile)
		if err != nil {
			return nil, fmt.Errorf("--labels-file: %w", err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line == "" {
				continue
			}
			k, quoted, ok := strings.Cut(line, "=")
			v, err := strconv.Unquote(quoted)
			if !ok || err != nil {
				return nil, fmt.Errorf("--labels-file %s:%d: want key=\"value\", got %q", o.labelsFile, n+1, line)
			}
			labels[k] = v
		}
	}
	for k, v := range o.labels {
		labels[k] = v
	}
	if o.namespace == "" && len(labels) == 0 {
		return nil, nil
	}
	return structpb.NewStruct(map[string]any{"NAMESPACE": o.namespace, "LABELS": labels})
}

// run is the sidecar's life: the xDS client, the proxy, the admin endpoints, until ctx ends.
func (o *sidecarOptions) run(ctx context.Context, logOut io.Writer) error {
	log, _, err := (&serveOptions{logLevel: o.logLevel, logFormat: o.logFormat}).logger(logOut)
	if err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(o.xds); err != nil {
		return fmt.Errorf("--xds-server %q: %w", o.xds, err)
	}
	certs, err := o.workloadCertificates(ctx, log)
	if err != nil {
		return err
	}
	dopts, err := o.dialOptions(certs)
	if err != nil {
		return err
	}
	md, err := o.metadata()
	if err != nil {
		return err
	}
	xc, err := sidecar.Dial(o.xds, sidecar.Options{NodeID: o.node, Metadata: md, DialOptions: dopts, Logger: log.With("component", "xds")})
	if err != nil {
		return err
	}
	defer xc.Close()
	p := dataplane.New(dataplane.Options{Listen: o.listen, BrokerHost: o.brokerHost, Routes: xc, Logger: log})
	if err := p.Start(); err != nil {
		return err
	}
	defer p.Close()
	if o.admin != "" {
		srv, err := o.sidecarAdmin(xc, p, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	log.Info("sidecar running", "addr", p.Addr(), "xds", o.xds, "node", o.node)
	<-ctx.Done()
	log.Info("sidecar draining", "timeout", o.drain)
	dctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	if err := p.Drain(dctx); err != nil {
		log.Warn("sidecar drain cut short", "err", err)
	}
	log.Info("sidecar stopped")
	return nil
}

// sidecarAdmin serves /healthz (the process is up), /readyz (its first xDS stream to the control plane opened, and
// it is not draining; it stays ready while the control plane is away, routing by its last routes: a control-plane
// outage must not take every pod out of its Services), /metrics (the proxy's, and Go's own) and the sidecar's
// status at /api/v1/sidecar (package sidecaradmin), and that status as a page at / (package dashboard).
func (o *sidecarOptions) sidecarAdmin(xc *sidecar.Client, p *dataplane.Proxy, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", o.admin)
	if err != nil {
		return nil, fmt.Errorf("--admin-address %s: %w", o.admin, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.Metrics().Collectors()...)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rocketpilot_sidecar_xds_connected",
			Help: "1 while an xDS stream to the control plane is open."}, func() float64 {
			if xc.Connected() {
				return 1
			}
			return 0
		}))
	ready := func() error {
		if p.Draining() {
			return errors.New("draining")
		}
		if streams, _ := xc.Stats(); streams == 0 {
			return errors.New("no xDS stream to the control plane yet")
		}
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	status := func() sidecaradmin.Sidecar { return o.status(xc, p, ready) }
	mux.Handle("/api/v1/", sidecaradmin.Handler(status))
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", dashboard.NewSidecar(func() any { return status() }, time.Second).Handler()) // its page, at /
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("sidecar admin endpoint", "err", err)
		}
	}()
	log.Info("sidecar admin listening", "addr", ln.Addr().String())
	return srv, nil
}

// status is the sidecar's answer to GET /api/v1/sidecar.
func (o *sidecarOptions) status(xc *sidecar.Client, p *dataplane.Proxy, ready func() error) sidecaradmin.Sidecar {
	streams, nacks := xc.Stats()
	groups := []sidecaradmin.Group{}
	for _, g := range p.Groups() {
		groups = append(groups, sidecaradmin.Group{Name: g.Name, Address: g.Addr})
	}
	return sidecaradmin.Sidecar{Node: o.node, XDSServer: o.xds, Ready: ready() == nil, Connected: xc.Connected(),
		Draining: p.Draining(), Streams: streams, NACKs: nacks, Listen: p.Addr(), Groups: groups,
		Routes: p.RoutesHeld(), Pop: p.PopStats(), Version: version}
}

package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/rocketpilot/rocketpilot/routing"
)

// FollowerOptions configure a Follower. Zero values take the defaults in parentheses.
type FollowerOptions struct {
	// Leader returns the leader's xDS address, asked again at every connection ("" while there is none).
	Leader func() string
	// Dial are the gRPC options of the connection (credentials: the same as the replica serves with).
	Dial []grpc.DialOption
	// All subscribes to every topic (all discovery); otherwise only to those in the table's interest, which the
	// leader then polls for this replica (in-use discovery).
	All bool
	// NodeID names the follower in the leader's logs (rocketpilot-follower).
	NodeID string
	// MinBackoff and MaxBackoff bound the wait between connection attempts (100ms, 5s).
	MinBackoff, MaxBackoff time.Duration
	// MaxMessageSize bounds a response (256 MiB): a follower of every topic receives them all in its first.
	MaxMessageSize int
	Logger         *slog.Logger
}

// Follower takes a leader's source routes into a table, under the leader's source names, until its context ends.
// Whatever happens to the leader, the table keeps what it last received (the last good routes, as a watcher keeps
// them through a NameServer outage); a new leader's answers replace them, and what it does not have is withdrawn.
type Follower struct {
	table *routing.Table
	opts  FollowerOptions
	log   *slog.Logger

	// What this follower applied, so that what the leader withdraws (or a new leader lacks) is withdrawn here:
	// topic → sources, and the sources whose broker tables it set. Only Run's goroutine touches them.
	held    map[string][]string
	brokers map[string]bool
	// versions are the resources' versions, declared to the leader when reconnecting (delta xDS
	// initial_resource_versions), so that it sends only what changed.
	versions map[string]string

	syncOnce sync.Once
	synced   chan struct{}
	mu       sync.Mutex
	state    FollowerStatus
}

// FollowerStatus is what a follower reports of itself.
type FollowerStatus struct {
	Leader    string    `json:"leader"`
	Connected bool      `json:"connected"`
	Topics    int       `json:"topics"`
	Updates   int64     `json:"updates"` // resources applied since start
	LastError string    `json:"lastError,omitempty"`
	Since     time.Time `json:"since"` // of the current state (connected or not)
}

// NewFollower returns a follower into table; Run runs it.
func NewFollower(table *routing.Table, opts FollowerOptions) *Follower {
	if opts.NodeID == "" {
		opts.NodeID = "rocketpilot-follower"
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 256 << 20
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Follower{table: table, opts: opts, log: log, held: map[string][]string{}, brokers: map[string]bool{},
		versions: map[string]string{}, synced: make(chan struct{})}
}

// Synced is closed once the follower has applied a first answer of a leader.
func (f *Follower) Synced() <-chan struct{} { return f.synced }

// Status reports the follower's connection.
func (f *Follower) Status() FollowerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// Run follows leaders until ctx ends: it connects to the leader Leader names, and again with backoff after any
// failure.
func (f *Follower) Run(ctx context.Context) {
	backoff := f.opts.MinBackoff
	for ctx.Err() == nil {
		addr := f.opts.Leader()
		if addr != "" {
			err := f.follow(ctx, addr)
			if ctx.Err() != nil {
				return
			}
			f.note(addr, false, err)
			f.log.Warn("lost the leader; serving the last routes it sent", "leader", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, f.opts.MaxBackoff)
		if f.Status().Connected {
			backoff = f.opts.MinBackoff
		}
	}
}

func (f *Follower) note(leader string, connected bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Connected != connected || f.state.Leader != leader {
		f.state.Since = time.Now()
	}
	f.state.Leader, f.state.Connected = leader, connected
	if err != nil {
		f.state.LastError = err.Error()
	}
	f.state.Topics = len(f.held)
}

// follow runs one stream to one leader until it fails or ctx ends.
func (f *Follower) follow(ctx context.Context, addr string) error {
	opts := append(slices.Clone(f.opts.Dial), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(f.opts.MaxMessageSize)))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &streamDesc, Method)
	if err != nil {
		return err
	}
	stream := &grpc.GenericClientStream[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]{ClientStream: cs}
	var sendMu sync.Mutex
	send := func(req *discovery.DeltaDiscoveryRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		req.TypeUrl = TypeURL
		return stream.Send(req)
	}
	first := &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: f.opts.NodeID}, ResourceNamesSubscribe: []string{BrokersName},
		InitialResourceVersions: f.versions}
	var interest *routing.InterestReader
	if f.opts.All {
		first.ResourceNamesSubscribe = append(first.ResourceNamesSubscribe, "*")
	} else {
		// The topics this replica's sidecars use, and later their changes: each is a subscription at the leader,
		// which its watchers then poll.
		interest = f.table.Interest().Follow()
		defer interest.Close()
		added, _ := interest.Drain()
		first.ResourceNamesSubscribe = append(first.ResourceNamesSubscribe, added...)
	}
	if err := send(first); err != nil {
		return err
	}
	if interest != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-interest.Changed():
				}
				added, removed := interest.Drain()
				if len(added)+len(removed) == 0 {
					continue
				}
				if err := send(&discovery.DeltaDiscoveryRequest{ResourceNamesSubscribe: added, ResourceNamesUnsubscribe: removed}); err != nil {
					cancel()
					return
				}
			}
		}()
	}
	f.note(addr, true, nil)
	f.log.Info("following the leader", "leader", addr, "all", f.opts.All)
	for firstAnswer := true; ; firstAnswer = false {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the leader ended the stream")
			}
			return err
		}
		if err := f.apply(resp, firstAnswer && f.opts.All); err != nil {
			_ = send(&discovery.DeltaDiscoveryRequest{ResponseNonce: resp.Nonce, ErrorDetail: statusOf(err)})
			return fmt.Errorf("a response the follower cannot apply: %w", err)
		}
		f.note(addr, true, nil)
		if err := send(&discovery.DeltaDiscoveryRequest{ResponseNonce: resp.Nonce}); err != nil {
			return err
		}
		f.syncOnce.Do(func() { close(f.synced) })
	}
}

// apply takes one response into the table. The first answer to a subscription to every topic is the leader's
// whole world besides what the follower declared it holds: a topic held here that the leader neither sent nor
// kept (a leader that changed while the follower was away) is withdrawn.
func (f *Follower) apply(resp *discovery.DeltaDiscoveryResponse, whole bool) error {
	type decoded struct {
		name   string
		topic  topicResource
		broker brokersResource
	}
	all := make([]decoded, 0, len(resp.Resources))
	for _, r := range resp.Resources {
		if r.Resource == nil {
			return fmt.Errorf("resource %s has no value", r.Name)
		}
		d := decoded{name: r.Name}
		var err error
		if r.Name == BrokersName {
			err = decodeResource(r.Resource.Value, &d.broker)
		} else {
			err = decodeResource(r.Resource.Value, &d.topic)
		}
		if err != nil {
			return fmt.Errorf("resource %s: %w", r.Name, err)
		}
		all = append(all, d)
	}
	// Decoded whole before anything is applied: a bad response changes nothing.
	bySource := map[string][]routing.Update{}
	for i, d := range all {
		f.versions[d.name] = resp.Resources[i].Version
		if d.name == BrokersName {
			f.applyBrokers(d.broker)
			continue
		}
		now := make([]string, 0, len(d.topic.Sources))
		for _, r := range d.topic.Sources {
			route := &routing.Route{Members: r.Members, OrderTopicConf: r.OrderTopicConf}
			bySource[r.Source] = append(bySource[r.Source], routing.Update{Topic: d.name, Route: route})
			now = append(now, r.Source)
		}
		for _, s := range f.held[d.name] {
			if !slices.Contains(now, s) {
				bySource[s] = append(bySource[s], routing.Update{Topic: d.name})
			}
		}
		f.held[d.name] = now
	}
	removed := resp.RemovedResources
	if whole {
		sent := make(map[string]bool, len(resp.Resources))
		for _, r := range resp.Resources {
			sent[r.Name] = true
		}
		for name := range f.held {
			if _, kept := f.versions[name]; !sent[name] && !kept {
				removed = append(removed, name)
			}
		}
	}
	for _, name := range removed {
		delete(f.versions, name)
		for _, s := range f.held[name] {
			bySource[s] = append(bySource[s], routing.Update{Topic: name})
		}
		delete(f.held, name)
	}
	for source, updates := range bySource {
		f.table.Apply(source, updates...)
	}
	return nil
}

func (f *Follower) applyBrokers(b brokersResource) {
	for source, brokers := range b.Sources {
		f.table.SetBrokers(source, brokers)
		f.brokers[source] = true
	}
	for source := range f.brokers {
		if _, ok := b.Sources[source]; !ok {
			f.table.SetBrokers(source, nil)
			delete(f.brokers, source)
		}
	}
}

// statusOf is the error detail of a NACK.
func statusOf(err error) *rpcstatus.Status {
	return &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

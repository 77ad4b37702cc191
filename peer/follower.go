package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
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
	// RemoveGrace: a removal the leader reports within it of the stream's start (or of the topic's subscription)
	// waits that long before it is applied, and is dropped if the topic comes back meanwhile (30s). A new leader
	// (or one whose watchers have just been asked for a topic) may not have polled what this replica serves yet:
	// its first answers must not withdraw what is only late.
	RemoveGrace time.Duration
	Logger      *slog.Logger
}

// Follower takes a leader's source routes into a table, under the leader's source names, until its context ends.
// Whatever happens to the leader, the table keeps what it last received (the last good routes, as a watcher keeps
// them through a NameServer outage); a new leader's answers replace them, and what it does not have is withdrawn.
type Follower struct {
	table *routing.Table
	opts  FollowerOptions
	log   *slog.Logger

	// What the table holds under the leader's sources, so that what the leader withdraws (or a new leader lacks)
	// is withdrawn here: topic → sources, and the sources whose broker tables are set; seeded from the table (a
	// replica that led and now follows). Under tableMu.
	tableMu sync.Mutex
	held    map[string][]string
	brokers map[string]bool
	// versions are the resources' versions, declared to the leader when reconnecting (delta xDS
	// initial_resource_versions), so that it sends only what changed.
	versions map[string]string
	// doubt holds removals waiting for RemoveGrace (topic → when they apply); recent, the times of this stream's
	// start and of its subscriptions (topic → when subscribed).
	doubt        map[string]time.Time
	doubtBrokers map[string]time.Time // sources whose broker tables a new stream's leader lacks, the same way
	recent       map[string]time.Time
	start        time.Time

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
	if opts.RemoveGrace <= 0 {
		opts.RemoveGrace = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Follower{table: table, opts: opts, log: log, held: map[string][]string{}, brokers: map[string]bool{},
		versions: map[string]string{}, doubt: map[string]time.Time{}, doubtBrokers: map[string]time.Time{}, recent: map[string]time.Time{},
		synced: make(chan struct{})}
	// What the table holds now (this replica's own watchers' routes, when it led): a leader that lacks it has it
	// withdrawn, after the grace.
	table.Range(func(t *routing.Topic) bool {
		for _, r := range table.TopicSources(t.Name) {
			f.held[t.Name] = append(f.held[t.Name], r.Source)
		}
		return true
	})
	for source := range table.SourceBrokers() {
		f.brokers[source] = true
	}
	return f
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
		if addr := f.opts.Leader(); addr != "" {
			answered, err := f.follow(ctx, addr)
			if ctx.Err() != nil {
				return
			}
			f.note(addr, false, err)
			f.log.Warn("lost the leader; serving the last routes it sent", "leader", addr, "err", err)
			if answered {
				backoff = f.opts.MinBackoff // it was a leader: look for the next one at once
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, f.opts.MaxBackoff)
	}
}

func (f *Follower) note(leader string, connected bool, err error) {
	f.tableMu.Lock()
	topics := len(f.held)
	f.tableMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state.Connected != connected || f.state.Leader != leader {
		f.state.Since = time.Now()
	}
	f.state.Leader, f.state.Connected = leader, connected
	if err != nil {
		f.state.LastError = err.Error()
	}
	f.state.Topics = topics
}

// follow runs one stream to one leader until it fails or ctx ends; answered says it applied an answer.
func (f *Follower) follow(ctx context.Context, addr string) (answered bool, err error) {
	opts := append(slices.Clone(f.opts.Dial), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(f.opts.MaxMessageSize)))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &streamDesc, Method)
	if err != nil {
		return false, err
	}
	stream := &grpc.GenericClientStream[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]{ClientStream: cs}
	var sendMu sync.Mutex
	send := func(req *discovery.DeltaDiscoveryRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		req.TypeUrl = TypeURL
		return stream.Send(req)
	}
	f.tableMu.Lock()
	f.start = time.Now()
	clear(f.recent)
	first := &discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: f.opts.NodeID}, ResourceNamesSubscribe: []string{BrokersName},
		InitialResourceVersions: maps.Clone(f.versions)}
	f.tableMu.Unlock()
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
		return false, err
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
				f.subscribed(added, removed)
				if err := send(&discovery.DeltaDiscoveryRequest{ResourceNamesSubscribe: added, ResourceNamesUnsubscribe: removed}); err != nil {
					cancel()
					return
				}
			}
		}()
	}
	go func() { // removals whose grace has run out
		tick := time.NewTicker(min(time.Second, f.opts.RemoveGrace/2))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				f.removeDoubted(now)
			}
		}
	}()
	f.note(addr, true, nil)
	f.log.Info("following the leader", "leader", addr, "all", f.opts.All)
	for firstAnswer := true; ; firstAnswer = false {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the leader ended the stream")
			}
			return answered, err
		}
		if err := f.apply(resp, firstAnswer && f.opts.All); err != nil {
			_ = send(&discovery.DeltaDiscoveryRequest{ResponseNonce: resp.Nonce, ErrorDetail: statusOf(err)})
			return answered, fmt.Errorf("a response the follower cannot apply: %w", err)
		}
		answered = true
		f.note(addr, true, nil)
		if err := send(&discovery.DeltaDiscoveryRequest{ResponseNonce: resp.Nonce}); err != nil {
			return answered, err
		}
		f.syncOnce.Do(func() { close(f.synced) })
	}
}

// subscribed records the topics this replica's sidecars came to use (their removals, if the leader reports any
// soon, are doubted) and withdraws those they no longer use: a follower in in-use discovery holds what its
// sidecars use, as an in-use watcher does.
func (f *Follower) subscribed(added, removed []string) {
	f.tableMu.Lock()
	defer f.tableMu.Unlock()
	now := time.Now()
	for _, name := range added {
		f.recent[name] = now
	}
	bySource := map[string][]routing.Update{}
	for _, name := range removed {
		delete(f.recent, name)
		delete(f.doubt, name)
		delete(f.versions, name)
		f.withdrawLocked(name, bySource)
	}
	f.applyLocked(bySource)
}

// removeDoubted applies the removals whose grace ran out by now.
func (f *Follower) removeDoubted(now time.Time) {
	f.tableMu.Lock()
	defer f.tableMu.Unlock()
	bySource := map[string][]routing.Update{}
	for name, at := range f.doubt {
		if !now.Before(at) {
			delete(f.doubt, name)
			f.withdrawLocked(name, bySource)
		}
	}
	f.applyLocked(bySource)
	for source, at := range f.doubtBrokers {
		if !now.Before(at) {
			delete(f.doubtBrokers, source)
			delete(f.brokers, source)
			f.table.SetBrokers(source, nil)
		}
	}
}

// withdrawLocked queues the withdrawal of a topic from every source it is held under.
func (f *Follower) withdrawLocked(name string, bySource map[string][]routing.Update) {
	for _, s := range f.held[name] {
		bySource[s] = append(bySource[s], routing.Update{Topic: name})
	}
	delete(f.held, name)
}

func (f *Follower) applyLocked(bySource map[string][]routing.Update) {
	for source, updates := range bySource {
		f.table.Apply(source, updates...)
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
	f.tableMu.Lock()
	defer f.tableMu.Unlock()
	bySource := map[string][]routing.Update{}
	for i, d := range all {
		delete(f.doubt, d.name) // it came back
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
	now := time.Now()
	for _, name := range removed {
		delete(f.versions, name)
		if since, ok := f.recent[name]; now.Sub(f.start) < f.opts.RemoveGrace || ok && now.Sub(since) < f.opts.RemoveGrace {
			// A leader that has just been asked may not have polled it yet: withdrawn only if it stays away.
			if _, held := f.held[name]; held {
				if _, doubted := f.doubt[name]; !doubted {
					f.doubt[name] = now.Add(f.opts.RemoveGrace)
				}
			}
			continue
		}
		f.withdrawLocked(name, bySource)
	}
	f.applyLocked(bySource)
	return nil
}

// applyBrokers takes the sources' broker tables. A source whose table is missing is dropped; within the grace of
// the stream's start (a leader that has not polled it yet), only if no answer brings it back before the grace
// has run out.
func (f *Follower) applyBrokers(b brokersResource) {
	for source, brokers := range b.Sources {
		f.table.SetBrokers(source, brokers)
		f.brokers[source] = true
		delete(f.doubtBrokers, source)
	}
	now := time.Now()
	for source := range f.brokers {
		if _, ok := b.Sources[source]; ok {
			continue
		}
		if now.Sub(f.start) < f.opts.RemoveGrace {
			if _, doubted := f.doubtBrokers[source]; !doubted {
				f.doubtBrokers[source] = now.Add(f.opts.RemoveGrace)
			}
			continue
		}
		f.table.SetBrokers(source, nil)
		delete(f.brokers, source)
	}
}

// statusOf is the error detail of a NACK.
func statusOf(err error) *rpcstatus.Status {
	return &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/routing"
)

// Sources runs one NameServer watcher per source, into one routing table: one per NameServerSource, and the
// command line's NameServers (FlagSource). Each NameServer of a source is a table source of its own
// ("nss:<namespace/name>@<addr>", "namesrv@<addr>"), so the table merges every view. It is the one supervisor of
// the watchers: their status, their first sync and their end are read here.
type Sources struct {
	table *routing.Table
	// Defaults are the watcher options a NameServerSource does not set (concurrency, rate limit, timeouts).
	defaults watcher.Options
	log      *slog.Logger

	mu      sync.Mutex
	running map[string]*runningSource
	// standby: another replica leads and polls the NameServers (package peer); the sources' specs are parked
	// here, not watched, until Activate.
	standby bool
	parked  map[string]SourceSpec
}

type runningSource struct {
	spec   SourceSpec
	w      *watcher.Watcher
	cancel context.CancelFunc
	done   chan struct{}
	// stale are NameServers earlier specs listed and this one does not: their routes stay in the table until
	// this watcher has synced (under Sources.mu).
	stale []string
}

// NewSources returns a Sources over table; defaults fill what a NameServerSource does not say.
func NewSources(table *routing.Table, defaults watcher.Options, log *slog.Logger) *Sources {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sources{table: table, defaults: defaults, log: log, running: map[string]*runningSource{}, parked: map[string]SourceSpec{}}
}

// FlagSource is the key of the NameServers the command line names (--namesrv, --demo): a source like a
// NameServerSource, whose table sources are "namesrv@<addr>". A NameServerSource's key always has a namespace
// ("namespace/name"), so the two never meet; no custom resource or file changes or removes it.
const FlagSource = "namesrv"

func tableSource(key string) string {
	if key == FlagSource {
		return key
	}
	return "nss:" + key
}

// Set starts the watcher of a source, or restarts it when its spec changed. The routes it learned stay in the
// table across a restart, and those of NameServers the new spec no longer lists are withdrawn once the new watcher
// has synced: make before break, so that a NameServer that moved (a NameService's pod restarted with a new IP)
// or an address mistyped never withdraws what is served before another NameServer has answered. A spec with an
// address no NameServer can listen on is refused, and the running watcher kept.
func (s *Sources) Set(key string, spec SourceSpec) error {
	for _, a := range spec.Addrs {
		if err := checkAddress(a); err != nil {
			return fmt.Errorf("NameServerSource %s: %w", key, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.standby {
		s.parked[key] = spec
		return nil
	}
	return s.startLocked(key, spec, false)
}

// startLocked starts (or restarts) a source's watcher. inherited says the table may hold routes under the
// source's names that no watcher of this replica learned (a leader's, received as a follower): they are served
// until the watcher has synced, and what it does not follow is withdrawn then, as after a restart.
func (s *Sources) startLocked(key string, spec SourceSpec, inherited bool) error {
	old := s.running[key]
	if old != nil && old.spec.equal(spec) {
		return nil
	}
	opts := s.defaults
	opts.Source, opts.Addrs, opts.Mode, opts.Topics = tableSource(key), spec.Addrs, spec.Mode, spec.Topics
	if spec.Interval > 0 {
		opts.Interval = spec.Interval
		if opts.BrokerInterval > spec.Interval {
			opts.BrokerInterval = spec.Interval
		}
	}
	if spec.FrameLimit > 0 {
		opts.Client.MaxFrameSize = spec.FrameLimit
	}
	opts.Logger = s.log.With("source", key)
	w, err := watcher.New(s.table, opts)
	if err != nil {
		return fmt.Errorf("NameServerSource %s: %w", key, err)
	}
	var stale []string
	if old != nil {
		old.stop()
		for _, a := range slices.Concat(old.spec.Addrs, old.stale) {
			if !slices.Contains(spec.Addrs, a) && !slices.Contains(stale, a) {
				stale = append(stale, a)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningSource{spec: spec, w: w, cancel: cancel, done: make(chan struct{}), stale: stale}
	go func() { defer close(r.done); w.Run(ctx) }()
	if old != nil || inherited {
		// The new watcher starts with no topics; the table keeps what the old one learned, so the mesh is
		// served meanwhile. Once it has synced, what it does not follow is withdrawn: a topic deleted while the
		// watcher restarted must not stay served forever.
		go s.withdrawUnfollowed(ctx, key, r)
	}
	s.running[key] = r
	s.log.Info("watching NameServers", "source", key, "addrs", spec.Addrs, "mode", spec.Mode, "interval", opts.Interval)
	return nil
}

// checkAddress refuses what the schema's host:port pattern lets through but no NameServer can listen on: a port
// outside 1–65535.
func checkAddress(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %s: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("address %s: port %s is not in 1-65535", addr, port)
	}
	return nil
}

// withdrawUnfollowed waits for a restarted watcher's first sync and withdraws the routes of the NameServers the
// source no longer lists, then, from each of its NameServers' table sources, the topics it does not follow.
func (s *Sources) withdrawUnfollowed(ctx context.Context, key string, r *runningSource) {
	select {
	case <-r.w.Synced():
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	if s.running[key] == r { // not replaced meanwhile: a replacement inherits the stale NameServers
		for _, a := range r.stale {
			s.table.RemoveSource(tableSource(key) + "@" + a)
		}
		if len(r.stale) > 0 {
			s.log.Info("withdrew the routes of NameServers the source no longer lists", "source", key, "addrs", r.stale)
		}
		r.stale = nil
	}
	s.mu.Unlock()
	// What the sources hold first, what the watcher follows second: a topic it learns in between is followed.
	held := map[string][]string{}
	for _, a := range r.spec.Addrs {
		source := tableSource(key) + "@" + a
		held[source] = s.table.SourceTopics(source)
	}
	followed := map[string]bool{}
	for _, t := range r.w.Topics() {
		followed[t] = true
	}
	for _, a := range r.spec.Addrs {
		source := tableSource(key) + "@" + a
		var gone []string
		for _, t := range held[source] {
			if !followed[t] {
				gone = append(gone, t)
			}
		}
		if len(gone) > 0 && ctx.Err() == nil {
			s.table.Withdraw(source, gone)
			s.log.Info("withdrew topics the restarted watcher no longer follows", "source", key, "addr", a, "topics", len(gone))
		}
	}
}

func (r *runningSource) stop() {
	r.cancel()
	<-r.done
}

// Standby stops every watcher and parks the sources' specs, leaving the table as it is: another replica now
// leads, and a follower (package peer) keeps the table current under the same source names. Set and Remove
// change only the parked specs until Activate.
func (s *Sources) Standby() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.standby {
		return
	}
	s.standby = true
	for k, r := range s.running {
		r.stop()
		delete(s.running, k)
		s.parked[k] = r.spec
	}
	if len(s.parked) > 0 {
		s.log.Info("standing by: another replica polls the NameServers", "sources", slices.Sorted(maps.Keys(s.parked)))
	}
}

// Activate starts the parked sources' watchers: this replica now leads. What the table holds under their names
// stays served until each has synced; then what it does not follow is withdrawn.
func (s *Sources) Activate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.standby {
		return nil
	}
	s.standby = false
	var errs []error
	for k, spec := range s.parked {
		if err := s.startLocked(k, spec, true); err != nil {
			errs = append(errs, err)
		}
		delete(s.parked, k)
	}
	return errors.Join(errs...)
}

// Standing reports whether the sources are parked (Standby) rather than watched.
func (s *Sources) Standing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.standby
}

// Remove stops a source's watcher and withdraws everything it learned.
func (s *Sources) Remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.standby {
		delete(s.parked, key) // what the leader withdraws, the follower withdraws
		return
	}
	r := s.running[key]
	if r == nil {
		return
	}
	r.stop()
	delete(s.running, key)
	for _, a := range slices.Concat(r.spec.Addrs, r.stale) {
		s.table.RemoveSource(tableSource(key) + "@" + a)
	}
	s.log.Info("stopped watching NameServers", "source", key)
}

// Status returns a source's watcher status; ok is false when the source is not running.
func (s *Sources) Status(key string) (st watcher.Status, ok bool) {
	s.mu.Lock()
	r := s.running[key]
	s.mu.Unlock()
	if r == nil {
		return watcher.Status{}, false
	}
	return r.w.Status(), true
}

// Keys returns the running (or parked) sources, sorted.
func (s *Sources) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.Collect(maps.Keys(s.running))
	for k := range s.parked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Parked reports whether a source is parked: another replica polls its NameServers.
func (s *Sources) Parked(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.parked[key]
	return ok
}

// Statuses returns every running source's watcher status, by key.
func (s *Sources) Statuses() []watcher.Status {
	out := []watcher.Status{}
	for _, k := range s.Keys() {
		if st, ok := s.Status(k); ok {
			out = append(out, st)
		}
	}
	return out
}

// Waiting describes the running sources whose first sync is not done, one line each with their NameServers and
// the last error of each: what a control plane that holds xDS back waits for.
func (s *Sources) Waiting() []string {
	var out []string
	for _, st := range s.Statuses() {
		if st.Synced {
			continue
		}
		var addrs []string
		for _, ns := range st.NameServers {
			a := ns.Addr
			if ns.LastError != "" {
				a += " (" + ns.LastError + ")"
			} else if !ns.Reachable {
				a += " (not answered yet)"
			}
			addrs = append(addrs, a)
		}
		out = append(out, "NameServer source "+st.Source+": "+strings.Join(addrs, ", "))
	}
	return out
}

// Synced is closed once a source's watcher has completed its first sync; it is nil when the source is not
// running (a nil channel blocks for ever).
func (s *Sources) Synced(key string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.running[key]; r != nil {
		return r.w.Synced()
	}
	return nil
}

// WaitSynced waits until every running source has completed its first sync, or ctx ends.
func (s *Sources) WaitSynced(ctx context.Context) error {
	s.mu.Lock()
	var ws []*watcher.Watcher
	for _, r := range s.running {
		ws = append(ws, r.w)
	}
	s.mu.Unlock()
	for _, w := range ws {
		select {
		case <-w.Synced():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close stops every watcher, leaving what they learned in the table.
func (s *Sources) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.running {
		r.stop()
		delete(s.running, k)
	}
}

// WaitForResources waits until the reconcilers have caught up with what the reader lists in namespace ("" for
// all): every NameServerSource watched and through its first sync, every TopicRoute and TopicBinding reconciled
// at its current version. It returns what is still pending when ctx ends, or nil. A control plane serves only
// after it, so that a restart does not serve routes without their policies or nodes without their bindings.
func WaitForResources(ctx context.Context, r client.Reader, sources *Sources, policies *Policies, namespace string) []string {
	for {
		pending, err := pendingResources(ctx, r, sources, policies, namespace)
		if err == nil && len(pending) == 0 {
			return nil
		}
		if err != nil {
			pending = []string{err.Error()}
		}
		select {
		case <-ctx.Done():
			return pending
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// resourceLists are the three kinds as one namespace (or all) holds them.
type resourceLists struct {
	sources  v1alpha1.NameServerSourceList
	routes   v1alpha1.TopicRouteList
	bindings v1alpha1.TopicBindingList
}

func listResources(ctx context.Context, r client.Reader, namespace string) (*resourceLists, error) {
	l := &resourceLists{}
	for _, list := range []client.ObjectList{&l.sources, &l.routes, &l.bindings} {
		if err := r.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func pendingResources(ctx context.Context, r client.Reader, sources *Sources, policies *Policies, namespace string) ([]string, error) {
	l, err := listResources(ctx, r, namespace)
	if err != nil {
		return nil, err
	}
	var pending []string
	for i := range l.sources.Items {
		key := keyOf(&l.sources.Items[i])
		if st, ok := sources.Status(key); (!ok || !st.Synced) && !sources.Parked(key) {
			pending = append(pending, "NameServerSource "+key)
		}
	}
	for i := range l.routes.Items {
		if o := &l.routes.Items[i]; !policies.Reconciled("TopicRoute", keyOf(o), objectVersion(o)) {
			pending = append(pending, "TopicRoute "+keyOf(o))
		}
	}
	for i := range l.bindings.Items {
		if o := &l.bindings.Items[i]; !policies.Reconciled("TopicBinding", keyOf(o), objectVersion(o)) {
			pending = append(pending, "TopicBinding "+keyOf(o))
		}
	}
	return pending, nil
}

// Prune drops what the model holds of resources the reader no longer lists in namespace ("" for all): those
// deleted while no manager watched (between a lost lease and the next manager), whose delete events nobody saw.
func Prune(ctx context.Context, r client.Reader, sources *Sources, policies *Policies, namespace string) error {
	l, err := listResources(ctx, r, namespace)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for i := range l.sources.Items {
		listed["NameServerSource/"+keyOf(&l.sources.Items[i])] = true
	}
	for i := range l.routes.Items {
		listed["TopicRoute/"+keyOf(&l.routes.Items[i])] = true
	}
	for i := range l.bindings.Items {
		listed["TopicBinding/"+keyOf(&l.bindings.Items[i])] = true
	}
	for _, k := range sources.Keys() {
		if k != FlagSource && !listed["NameServerSource/"+k] {
			sources.Remove(k)
		}
	}
	routes, bindings := policies.Keys()
	for _, k := range routes {
		if !listed["TopicRoute/"+k] {
			policies.SetRoute(k, "", nil)
		}
	}
	for _, k := range bindings {
		if !listed["TopicBinding/"+k] {
			policies.SetBinding(k, "", nil)
		}
	}
	return nil
}

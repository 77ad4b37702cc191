package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/routing"
)

// NameServiceGVK is rocketmq-operator's NameService, whose status.nameServers a NameServerSource may follow.
var NameServiceGVK = schema.GroupVersionKind{Group: "rocketmq.apache.org", Version: "v1alpha1", Kind: "NameService"}

// NameServicePort is the port of the NameServers a NameService lists (rocketmq-operator lists pod IPs only).
const NameServicePort = 9876

// Options wire the reconcilers to the model.
type Options struct {
	Table    *routing.Table
	Sources  *Sources
	Policies *Policies
	Logger   *slog.Logger
	// Resync is how often each object is reconciled again to refresh its status (30s).
	Resync time.Duration
	// Metrics counts reconcile errors; a private, unregistered one when nil.
	Metrics *Metrics
	// Rejections, when set, is what the nodes this replica serves rejected (the xDS cache): a TopicRoute whose
	// topics a rejected response carried gets its Rejected condition.
	Rejections RejectionFeed
	// Leading, when set, is told when this replica starts holding the leader Lease (true) and when it stops
	// (false): the replica that holds it also polls the NameServers for the others (package peer).
	Leading func(leading bool)

	refreshed func(key string) // tests: told each TopicRoute reconciled again for another one's change
}

// RejectionFeed reports xDS configuration that served nodes rejected and have not accepted a later version of.
type RejectionFeed interface {
	Rejections() []routing.Rejection
	RejectionsChanged() <-chan struct{} // closed when Rejections next changes
}

// Setup registers the three reconcilers with a manager. They run on every replica, feeding its model; status and
// events are written only by the replica that holds the leader lease (the manager's Elected channel), and when a
// replica becomes leader every object is reconciled at once so that status is current.
func Setup(mgr manager.Manager, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resync <= 0 {
		o.Resync = 30 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	base := reconciler{Client: mgr.GetClient(), opts: o, elected: mgr.Elected(), events: mgr.GetEventRecorder("rocketpilot")}
	notLeaderOnly := false
	refresh := newRefreshQueue()
	kinds := []struct {
		name string
		obj  client.Object
		list client.ObjectList
		r    func(reconciler, chan<- event.GenericEvent) ctrlReconciler
	}{
		{"nameserversource", &v1alpha1.NameServerSource{}, &v1alpha1.NameServerSourceList{},
			func(b reconciler, _ chan<- event.GenericEvent) ctrlReconciler { return &nameServerSourceReconciler{b} }},
		{"topicroute", &v1alpha1.TopicRoute{}, &v1alpha1.TopicRouteList{},
			func(b reconciler, _ chan<- event.GenericEvent) ctrlReconciler {
				return &topicRouteReconciler{b, refresh}
			}},
		{"topicbinding", &v1alpha1.TopicBinding{}, &v1alpha1.TopicBindingList{},
			func(b reconciler, _ chan<- event.GenericEvent) ctrlReconciler { return &topicBindingReconciler{b} }},
	}
	for _, k := range kinds {
		kick := make(chan event.GenericEvent)
		err := ctrl.NewControllerManagedBy(mgr).
			Named(k.name).
			For(k.obj).
			WatchesRawSource(source.Channel(kick, &handler.EnqueueRequestForObject{})).
			WithOptions(controller.Options{NeedLeaderElection: &notLeaderOnly, MaxConcurrentReconciles: 2}).
			Complete(counted{k.r(base, kick), o.Metrics.errors.WithLabelValues(k.name)})
		if err != nil {
			return fmt.Errorf("set up the %s controller: %w", k.name, err)
		}
		if err := mgr.Add(&leaderKick{c: mgr.GetClient(), list: k.list, kick: kick}); err != nil {
			return err
		}
		if k.name == "topicroute" {
			if err := mgr.Add(&refreshKick{queue: refresh, kick: kick, refreshed: o.refreshed}); err != nil {
				return err
			}
		}
		if k.name == "topicroute" && o.Rejections != nil {
			if err := mgr.Add(&rejectionKick{feed: o.Rejections, table: o.Table, kick: kick}); err != nil {
				return err
			}
		}
	}
	return nil
}

// rejectionKick runs only on the leader: whenever the rejections change, it reconciles the TopicRoutes whose
// topics they carry (and carried), so that their Rejected condition follows within one change.
type rejectionKick struct {
	feed  RejectionFeed
	table *routing.Table
	kick  chan<- event.GenericEvent
}

func (k *rejectionKick) NeedLeaderElection() bool { return true }

func (k *rejectionKick) Start(ctx context.Context) error {
	var before map[string][]routing.Rejection
	for {
		changed := k.feed.RejectionsChanged()
		now := rejectionsByPolicy(k.feed.Rejections(), k.table)
		for key := range mergedKeys(before, now) {
			ns, name, _ := strings.Cut(key, "/")
			select {
			case k.kick <- event.GenericEvent{Object: &v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}:
			case <-ctx.Done():
				return nil
			}
		}
		before = now
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

func mergedKeys(a, b map[string][]routing.Rejection) map[string]struct{} {
	out := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

// rejectionsByPolicy attributes each rejection to the TopicRoutes that shape the topics it carried.
func rejectionsByPolicy(rejections []routing.Rejection, table *routing.Table) map[string][]routing.Rejection {
	out := map[string][]routing.Rejection{}
	for _, r := range rejections {
		seen := map[string]bool{}
		for _, topic := range r.Topics {
			if policy, _ := table.TopicPolicy(topic); policy != "" && !seen[policy] {
				seen[policy] = true
				out[policy] = append(out[policy], r)
			}
		}
	}
	return out
}

// refreshQueue holds the TopicRoutes to reconcile again because another one's change changed their status. It is
// a set: however many changes name a TopicRoute before the leader's refreshKick takes it (a new leader reconciling
// every TopicRoute is such a burst), it is reconciled once.
type refreshQueue struct {
	mu      sync.Mutex
	pending map[string]struct{}
	ready   chan struct{} // signalled when pending gains a key
}

func newRefreshQueue() *refreshQueue {
	return &refreshQueue{pending: map[string]struct{}{}, ready: make(chan struct{}, 1)}
}

func (q *refreshQueue) add(keys []string) {
	if len(keys) == 0 {
		return
	}
	q.mu.Lock()
	for _, k := range keys {
		q.pending[k] = struct{}{}
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take empties the queue and returns what it held, sorted.
func (q *refreshQueue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	keys := slices.Sorted(maps.Keys(q.pending))
	q.pending = map[string]struct{}{}
	return keys
}

// refreshKick runs only on the leader: it reconciles the TopicRoutes the refresh queue holds.
type refreshKick struct {
	queue     *refreshQueue
	kick      chan<- event.GenericEvent
	refreshed func(key string) // may be nil
}

func (k *refreshKick) NeedLeaderElection() bool { return true }

func (k *refreshKick) Start(ctx context.Context) error {
	for {
		select {
		case <-k.queue.ready:
		case <-ctx.Done():
			return nil
		}
		for _, key := range k.queue.take() {
			ns, name, _ := strings.Cut(key, "/")
			select {
			case k.kick <- event.GenericEvent{Object: &v1alpha1.TopicRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}:
			case <-ctx.Done():
				return nil
			}
			if k.refreshed != nil {
				k.refreshed(key)
			}
		}
	}
}

type ctrlReconciler interface {
	Reconcile(context.Context, ctrl.Request) (ctrl.Result, error)
}

// leaderKick runs only on the leader: when elected, it reconciles every object of a kind once.
type leaderKick struct {
	c    client.Client
	list client.ObjectList
	kick chan<- event.GenericEvent
}

func (k *leaderKick) NeedLeaderElection() bool { return true }

func (k *leaderKick) Start(ctx context.Context) error {
	list := k.list.DeepCopyObject().(client.ObjectList)
	if err := k.c.List(ctx, list); err != nil {
		return fmt.Errorf("list to refresh status: %w", err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return err
	}
	for _, it := range items {
		select {
		case k.kick <- event.GenericEvent{Object: it.(client.Object)}:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// reconciler is what the three reconcilers share.
type reconciler struct {
	client.Client
	opts    Options
	elected <-chan struct{}
	events  recorder.EventRecorder
}

func (r *reconciler) leader() bool {
	select {
	case <-r.elected:
		return true
	default:
		return false
	}
}

// writeStatus updates an object's status subresource when this replica leads and the status changed.
func (r *reconciler) writeStatus(ctx context.Context, obj client.Object, before any, after any) error {
	if !r.leader() || equality.Semantic.DeepEqual(before, after) {
		return nil
	}
	if err := r.Status().Update(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update status of %s: %w", keyOf(obj), err)
	}
	return nil
}

func (r *reconciler) event(obj client.Object, warning bool, reason, note string, args ...any) {
	if !r.leader() {
		return
	}
	kind := corev1.EventTypeNormal
	if warning {
		kind = corev1.EventTypeWarning
	}
	r.events.Eventf(obj, nil, kind, reason, "Reconcile", note, args...)
}

// objectVersion identifies an object's spec: a recreated object of the same name starts at generation 1 again,
// so the UID is part of it.
func objectVersion(o client.Object) string {
	return string(o.GetUID()) + "/" + strconv.FormatInt(o.GetGeneration(), 10)
}

// fetch reads the object of a request; live is false when it is gone or being deleted.
func (r *reconciler) fetch(ctx context.Context, req ctrl.Request, obj client.Object) (live bool, err error) {
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return obj.GetDeletionTimestamp().IsZero(), nil
}

func condition(conds *[]metav1.Condition, generation int64, kind string, ok bool, reason, message string) {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{Type: kind, Status: status, Reason: reason, Message: message,
		ObservedGeneration: generation})
}

type nameServerSourceReconciler struct{ reconciler }

func (r *nameServerSourceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.String()
	var nss v1alpha1.NameServerSource
	if live, err := r.fetch(ctx, req, &nss); err != nil || !live {
		if err == nil {
			r.opts.Sources.Remove(key)
		}
		return ctrl.Result{}, err
	}
	before := nss.Status.DeepCopy()
	addrs, problem := r.addresses(ctx, &nss)
	var refused error
	if len(addrs) > 0 {
		if err := r.opts.Sources.Set(key, SourceSpecOf(&nss, addrs)); err != nil {
			refused, problem = err, err.Error()
		}
	}
	// With no addresses the running watcher (if any) keeps its last good routes: a NameService between pods is
	// no reason to blackhole the mesh.
	fillSourceStatus(&nss, r.opts.Sources, len(addrs) > 0, problem)
	st := &nss.Status
	if refused != nil {
		// A refused spec (an address no NameServer can listen on) leaves the running watcher, if any, on the last
		// spec it accepted, with its routes.
		condition(&st.Conditions, nss.Generation, v1alpha1.ConditionDegraded, true, v1alpha1.ReasonInvalid, problem)
		if _, running := r.opts.Sources.Status(key); !running {
			condition(&st.Conditions, nss.Generation, v1alpha1.ConditionReady, false, v1alpha1.ReasonInvalid, problem)
		}
		if c := meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionDegraded); c == nil || c.Reason != v1alpha1.ReasonInvalid || c.Message != problem {
			r.event(&nss, true, v1alpha1.ReasonInvalid, "%s", problem)
		}
	}
	if err := r.writeStatus(ctx, &nss, before, &nss.Status); err != nil {
		return ctrl.Result{}, err
	}
	if !meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	return ctrl.Result{RequeueAfter: r.opts.Resync}, nil
}

// fillSourceStatus sets a NameServerSource's status from its watcher. hasAddrs says whether it has addresses to
// watch; problem is what is wrong with them, if anything.
func fillSourceStatus(nss *v1alpha1.NameServerSource, sources *Sources, hasAddrs bool, problem string) {
	key := keyOf(nss)
	st := &nss.Status
	st.ObservedGeneration = nss.Generation
	ws, running := sources.Status(key)
	reachable := 0
	st.NameServers = nil
	for _, a := range ws.NameServers {
		ns := v1alpha1.NameServerStatus{Address: a.Addr, Reachable: a.Reachable, LastError: a.LastError}
		if !a.LastSuccess.IsZero() {
			t := metav1.NewTime(a.LastSuccess.Truncate(time.Second)) // the API stores seconds: compare as stored
			ns.LastSuccessTime = &t
		}
		if a.Reachable {
			reachable++
		} else if problem == "" {
			problem = fmt.Sprintf("NameServer %s unreachable: %s", a.Addr, a.LastError)
		}
		st.NameServers = append(st.NameServers, ns)
	}
	st.Topics, st.Brokers = int32(ws.Topics), 0
	for _, a := range ws.NameServers {
		st.Brokers = max(st.Brokers, int32(a.Brokers)) // NameServers of one source share their brokers
	}
	if !ws.LastDiscovery.IsZero() {
		t := metav1.NewTime(ws.LastDiscovery.Truncate(time.Second))
		st.LastSyncTime = &t
	}
	switch {
	case running && ws.Synced && reachable > 0:
		condition(&st.Conditions, nss.Generation, v1alpha1.ConditionReady, true, v1alpha1.ReasonSynced,
			fmt.Sprintf("%d topics from %d of %d NameServers", ws.Topics, reachable, len(ws.NameServers)))
	case running && ws.Synced:
		condition(&st.Conditions, nss.Generation, v1alpha1.ConditionReady, false, v1alpha1.ReasonUnreachable,
			"no NameServer answers; the last good routes are served")
	case !hasAddrs && !running:
		condition(&st.Conditions, nss.Generation, v1alpha1.ConditionReady, false, v1alpha1.ReasonNoAddresses, problem)
	default:
		condition(&st.Conditions, nss.Generation, v1alpha1.ConditionReady, false, v1alpha1.ReasonSyncing, "first sync in progress")
	}
	if problem != "" {
		reason := v1alpha1.ReasonUnreachable
		if !hasAddrs {
			reason = v1alpha1.ReasonNoAddresses
		}
		condition(&st.Conditions, nss.Generation, v1alpha1.ConditionDegraded, true, reason, problem)
	} else {
		condition(&st.Conditions, nss.Generation, v1alpha1.ConditionDegraded, false, v1alpha1.ReasonHealthy, "every NameServer answers")
	}
}

// addresses returns a source's NameServer addresses, and what is wrong when there are none.
func (r *nameServerSourceReconciler) addresses(ctx context.Context, nss *v1alpha1.NameServerSource) ([]string, string) {
	if ref := nss.Spec.NameServiceRef; ref != nil {
		ns := ref.Namespace
		if ns == "" {
			ns = nss.Namespace
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(NameServiceGVK)
		if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, obj); err != nil {
			return nil, fmt.Sprintf("NameService %s/%s: %v", ns, ref.Name, err)
		}
		list, _, _ := unstructured.NestedStringSlice(obj.Object, "status", "nameServers")
		var out []string
		for _, a := range list {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				a = net.JoinHostPort(a, strconv.Itoa(NameServicePort))
			}
			out = append(out, a)
		}
		if len(out) == 0 {
			return nil, fmt.Sprintf("NameService %s/%s lists no NameServers yet", ns, ref.Name)
		}
		return out, ""
	}
	return nss.Spec.Addresses, ""
}

type topicRouteReconciler struct {
	reconciler
	refresh *refreshQueue // the other TopicRoutes to reconcile again
}

func (r *topicRouteReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.String()
	var tr v1alpha1.TopicRoute
	if live, err := r.fetch(ctx, req, &tr); err != nil || !live {
		if err == nil {
			r.refreshLater(r.opts.Policies.SetRoute(key, "", nil))
		}
		return ctrl.Result{}, err
	}
	before := tr.Status.DeepCopy()
	refresh, err := applyTopicRoute(r.opts.Policies, r.opts.Table, &tr, objectVersion(&tr))
	r.refreshLater(refresh)
	if err != nil {
		r.event(&tr, true, v1alpha1.ReasonInvalid, "%v", err)
	} else {
		fillRejected(&tr, r.opts.Rejections, r.opts.Table)
		for _, kind := range []string{v1alpha1.ConditionConflicted, v1alpha1.ConditionRejected} {
			c := meta.FindStatusCondition(tr.Status.Conditions, kind)
			if c == nil || c.Status != metav1.ConditionTrue {
				continue
			}
			if old := meta.FindStatusCondition(before.Conditions, kind); old == nil || old.Message != c.Message {
				r.event(&tr, true, map[string]string{v1alpha1.ConditionConflicted: "Conflict", v1alpha1.ConditionRejected: "Rejected"}[kind], "%s", c.Message)
			}
		}
	}
	if err := r.writeStatus(ctx, &tr, before, &tr.Status); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: r.opts.Resync}, nil
}

// refreshLater queues, on the leader, the other TopicRoutes whose status a change of this one changed: their
// Conflicted condition and matched topics follow from it (a deleted winner hands its topics to the next oldest),
// and would otherwise wait for the periodic resync. The table names them (routing.Table.SetPolicies), so a change
// costs the TopicRoutes that share topics with it, never every TopicRoute; the queue coalesces a burst.
func (r *topicRouteReconciler) refreshLater(keys []string) {
	if r.leader() {
		r.refresh.add(keys)
	}
}

// ApplyTopicRoute records a TopicRoute's policy (unless it is invalid: then the policy it had stays) and fills
// its status from the table.
func ApplyTopicRoute(p *Policies, table *routing.Table, tr *v1alpha1.TopicRoute, version string) error {
	_, err := applyTopicRoute(p, table, tr, version)
	return err
}

// applyTopicRoute is ApplyTopicRoute that also returns the other TopicRoutes whose status the change changed.
func applyTopicRoute(p *Policies, table *routing.Table, tr *v1alpha1.TopicRoute, version string) (others []string, err error) {
	defer p.noteReconciled("TopicRoute", keyOf(tr), version)
	st := &tr.Status
	st.ObservedGeneration = tr.Generation
	policy, err := PolicyOf(tr)
	if err != nil {
		condition(&st.Conditions, tr.Generation, v1alpha1.ConditionAccepted, false, v1alpha1.ReasonInvalid, err.Error())
		return nil, err
	}
	others = p.SetRoute(keyOf(tr), version, &policy)
	condition(&st.Conditions, tr.Generation, v1alpha1.ConditionAccepted, true, v1alpha1.ReasonAccepted, "the policy is applied")
	fillTopicRouteStatus(tr, table)
	return others, nil
}

// fillRejected sets a TopicRoute's Rejected condition from the rejections of the nodes this replica serves.
func fillRejected(tr *v1alpha1.TopicRoute, feed RejectionFeed, table *routing.Table) {
	if feed == nil {
		return
	}
	rs := rejectionsByPolicy(feed.Rejections(), table)[keyOf(tr)]
	if len(rs) == 0 {
		condition(&tr.Status.Conditions, tr.Generation, v1alpha1.ConditionRejected, false, v1alpha1.ReasonNoRejection,
			"no served node rejects configuration with its topics")
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d node(s) rejected xDS configuration with its topics and keep their last good configuration:", len(rs))
	for i, r := range rs {
		if i == 5 {
			fmt.Fprintf(&b, " and %d more", len(rs)-i)
			break
		}
		errText := r.Error
		if len(errText) > 200 {
			errText = errText[:200] + "..."
		}
		fmt.Fprintf(&b, " %s (%s %s): %s;", r.Node, typeLabel(r.TypeURL), r.Version, errText)
	}
	condition(&tr.Status.Conditions, tr.Generation, v1alpha1.ConditionRejected, true, v1alpha1.ReasonNacked, strings.TrimSuffix(b.String(), ";"))
}

// typeLabel is the last part of a type URL: "RouteConfiguration" for the RocketMQ route type.
func typeLabel(typeURL string) string {
	if i := strings.LastIndexAny(typeURL, "./"); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// fillTopicRouteStatus sets an accepted TopicRoute's Resolved and Conflicted conditions and matched topics.
func fillTopicRouteStatus(tr *v1alpha1.TopicRoute, table *routing.Table) {
	st := &tr.Status
	ps := table.PolicyStatus(keyOf(tr))
	st.MatchedTopics = int32(ps.Matched)
	if len(ps.UnknownBackends) > 0 {
		condition(&st.Conditions, tr.Generation, v1alpha1.ConditionResolved, false, v1alpha1.ReasonBackendNotFound,
			"no broker cluster or group of that name: "+strings.Join(ps.UnknownBackends, ", "))
	} else {
		condition(&st.Conditions, tr.Generation, v1alpha1.ConditionResolved, true, v1alpha1.ReasonResolved,
			"every backend names a known broker cluster or group")
	}
	if ps.Overridden > 0 {
		condition(&st.Conditions, tr.Generation, v1alpha1.ConditionConflicted, true, v1alpha1.ReasonOverridden,
			fmt.Sprintf("%d matched topics follow an older TopicRoute: %s", ps.Overridden, strings.Join(ps.OverriddenBy, ", ")))
	} else {
		condition(&st.Conditions, tr.Generation, v1alpha1.ConditionConflicted, false, v1alpha1.ReasonNoConflict,
			"no older TopicRoute claims its topics")
	}
}

type topicBindingReconciler struct{ reconciler }

func (r *topicBindingReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.String()
	var tb v1alpha1.TopicBinding
	if live, err := r.fetch(ctx, req, &tb); err != nil || !live {
		if err == nil {
			r.opts.Policies.SetBinding(key, "", nil)
		}
		return ctrl.Result{}, err
	}
	before := tb.Status.DeepCopy()
	if err := ApplyTopicBinding(r.opts.Policies, r.opts.Table, &tb, objectVersion(&tb)); err != nil {
		r.event(&tb, true, v1alpha1.ReasonInvalid, "%v", err)
	}
	if err := r.writeStatus(ctx, &tb, before, &tb.Status); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: min(r.opts.Resync, 10*time.Second)}, nil
}

// ApplyTopicBinding records a TopicBinding (unless it is invalid) and fills its status.
func ApplyTopicBinding(p *Policies, table *routing.Table, tb *v1alpha1.TopicBinding, version string) error {
	defer p.noteReconciled("TopicBinding", keyOf(tb), version)
	st := &tb.Status
	st.ObservedGeneration = tb.Generation
	b, err := BindingOf(tb)
	if err != nil {
		condition(&st.Conditions, tb.Generation, v1alpha1.ConditionAccepted, false, v1alpha1.ReasonInvalid, err.Error())
		return err
	}
	p.SetBinding(keyOf(tb), version, &b)
	condition(&st.Conditions, tb.Generation, v1alpha1.ConditionAccepted, true, v1alpha1.ReasonAccepted,
		fmt.Sprintf("binds %d topics and %d consumer groups", len(tb.Spec.Topics), len(tb.Spec.ConsumerGroups)))
	fillTopicBindingStatus(tb, p, table)
	return nil
}

// fillTopicBindingStatus counts the connected proxies an accepted TopicBinding selects.
func fillTopicBindingStatus(tb *v1alpha1.TopicBinding, p *Policies, table *routing.Table) {
	if cur, ok := p.Binding(keyOf(tb)); ok {
		tb.Status.BoundProxies = int32(table.Proxies().Count(cur.Selects))
	}
}

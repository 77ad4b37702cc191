package embedded

import (
	"maps"
	"slices"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Defaults of the broker liveness options.
const (
	// DefaultBrokerTimeout is how long a broker registered over TCP stays without re-registering when its 103
	// header gives no heartbeatTimeoutMillis (RouteInfoManager.DEFAULT_BROKER_CHANNEL_EXPIRED_TIME).
	DefaultBrokerTimeout = 120 * time.Second
	// DefaultScanInterval is how often expired brokers are looked for (NamesrvConfig.scanNotActiveBrokerInterval).
	DefaultScanInterval = 5 * time.Second
)

// liveKey is BrokerAddrInfo: a broker address within a cluster.
type liveKey struct{ cluster, addr string }

// liveBroker is BrokerLiveInfo: what the NameServer remembers of a broker that registered over TCP.
type liveBroker struct {
	lastUpdate   time.Time
	timeout      time.Duration
	dataVersion  remoting.DataVersion
	conn         *conn
	haServerAddr string
}

func (lb *liveBroker) expired(now time.Time) bool { return lb.lastUpdate.Add(lb.timeout).Before(now) }

// registration is one decoded 103 request.
type registration struct {
	h    *remoting.RegisterBrokerHeader
	body *remoting.RegisterBrokerBody
	// filters says whether the body carries a filter server list (every body since V3_0_11); when false the
	// broker's filter servers are left as they were.
	filters bool
	conn    *conn
	now     time.Time
	timeout time.Duration // used when the header has none
	// deleteTopics is NamesrvConfig.deleteTopicWithBrokerRegistration.
	deleteTopics bool
}

// registerLocked is RouteInfoManager.registerBroker. ok is false when Java returns null ("register broker
// failed"). The caller holds the write lock.
func (st *state) registerLocked(r *registration) (res remoting.RegisterBrokerResponseHeader, ok bool) {
	h := r.h
	name, addr, id := h.BrokerName, h.BrokerAddr, h.BrokerID
	// Broker data is immutable once published: work on a copy and publish it on every way out, as Java's
	// in-place changes stay even when it gives up half way.
	nb := &remoting.BrokerData{Cluster: h.ClusterName, BrokerName: name, BrokerAddrs: map[int64]string{}}
	registerFirst := true
	if bd, found := st.brokers[name]; found {
		registerFirst = false
		c := *bd // a group keeps the cluster it was first registered in
		c.BrokerAddrs = maps.Clone(bd.BrokerAddrs)
		nb = &c
	}
	defer func() { st.brokers[name] = nb }()
	oldVersion := h.EnableActingMaster == nil
	nb.EnableActingMaster = !oldVersion && *h.EnableActingMaster
	nb.ZoneName = h.ZoneName
	addrs := nb.BrokerAddrs

	// Switching slave to master: the same address keeps only one id.
	maps.DeleteFunc(addrs, func(k int64, v string) bool { return v == addr && k != id })

	// Another address under this id with a newer state version wins; the newcomer is dropped.
	if old, found := addrs[id]; found && old != addr {
		if prev, found := st.live[liveKey{h.ClusterName, old}]; found && prev.dataVersion.StateVersion > r.body.DataVersion.StateVersion {
			delete(st.live, liveKey{h.ClusterName, addr})
			return res, true
		}
	}
	// A registration of a single topic needs the broker registered first (it is how Java tells a
	// registerSingleTopicAll-era request from a full one).
	if _, found := addrs[id]; !found && len(r.body.TopicConfigTable) == 1 {
		return res, false
	}
	oldAddr := addrs[id]
	addrs[id] = addr
	registerFirst = registerFirst || oldAddr == ""

	isMaster := id == 0
	isPrimeSlave := !oldVersion && !isMaster && id == slices.Min(slices.Collect(maps.Keys(addrs)))
	key := liveKey{h.ClusterName, addr}
	if isMaster || isPrimeSlave {
		if r.deleteTopics { // static topics, which would turn this off, are not simulated
			st.dropUnlistedLocked(name, r.body.TopicConfigTable)
		}
		prev, known := st.live[key]
		brokerChanged := !known || prev.dataVersion != r.body.DataVersion
		cache := make(map[queueEdit]*shape)
		for _, topic := range sortedKeys(r.body.TopicConfigTable) {
			tc := r.body.TopicConfigTable[topic]
			if tc.TopicName == "" {
				// Java files the queue data under a null topic name and fails with a NullPointerException; the
				// table key is the only sensible name.
				tc.TopicName = topic
			}
			if !registerFirst && !brokerChanged && st.hasQueue(tc.TopicName, name) {
				continue // isTopicConfigChanged: same data version and the topic already has this group
			}
			if isPrimeSlave && nb.EnableActingMaster {
				tc.Perm &^= remoting.PermWrite // the acting master of a group without master is read-only
			}
			st.putQueueLocked(tc.TopicName, remoting.QueueData{BrokerName: name, ReadQueueNums: tc.ReadQueueNums,
				WriteQueueNums: tc.WriteQueueNums, Perm: tc.Perm, TopicSysFlag: tc.TopicSysFlag}, cache)
		}
	}

	timeout := r.timeout
	if h.HeartbeatTimeoutMillis != nil {
		timeout = time.Duration(*h.HeartbeatTimeoutMillis) * time.Millisecond
	}
	st.live[key] = &liveBroker{lastUpdate: r.now, timeout: timeout, dataVersion: r.body.DataVersion, conn: r.conn,
		haServerAddr: h.HAServerAddr}
	if r.filters {
		if len(r.body.FilterServerList) == 0 {
			delete(st.filters, key)
		} else {
			st.filters[key] = slices.Clone(r.body.FilterServerList)
		}
	}
	if !isMaster {
		if master, found := addrs[0]; found {
			if ml, found := st.live[liveKey{h.ClusterName, master}]; found {
				res = remoting.RegisterBrokerResponseHeader{HAServerAddr: ml.haServerAddr, MasterAddr: master}
			}
		}
	}
	return res, true
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func (st *state) hasQueue(topic, brokerName string) bool {
	sh, ok := st.topics[topic]
	return ok && sh.index(brokerName) >= 0
}

// queueEdit is one createAndUpdateQueueData applied to a shape; topics of the same shape given the same queue
// data end on the same new shape, computed once.
type queueEdit struct {
	sh *shape
	q  remoting.QueueData
}

// putQueueLocked is createAndUpdateQueueData: the topic gets q as its queue data on q's broker group, and is
// created if needed.
func (st *state) putQueueLocked(topic string, q remoting.QueueData, cache map[queueEdit]*shape) {
	old := st.topics[topic]
	if old != nil {
		if i := old.index(q.BrokerName); i >= 0 && old.queues[i] == q {
			return
		}
	}
	ns, ok := cache[queueEdit{old, q}]
	if !ok {
		var queues []remoting.QueueData
		if old != nil {
			queues = make([]remoting.QueueData, 0, len(old.queues)+1)
			queues = append(queues, old.queues...)
		}
		ns = st.internLocked(st.canonicalLocked(append(queues, q)))
		cache[queueEdit{old, q}] = ns
	}
	st.assignLocked(topic, ns)
}

// rebuildLocked returns sh with its entry i replaced by q, or removed when q is nil; nil when nothing is left.
func (st *state) rebuildLocked(sh *shape, i int, q *remoting.QueueData) *shape {
	rest := append(st.scratchQ[:0], sh.queues[:i]...)
	if q != nil {
		rest = append(rest, *q)
	}
	rest = append(rest, sh.queues[i+1:]...)
	st.scratchQ = rest[:0]
	if len(rest) == 0 {
		return nil
	}
	return st.internLocked(rest)
}

// dropUnlistedLocked removes the group's queue data from the topics it no longer lists, and topics left without
// queue data (the deleteTopicWithBrokerRegistration branch of registerBroker).
func (st *state) dropUnlistedLocked(name string, listed map[string]remoting.TopicConfig) {
	next := make(map[*shape]*shape)
	for topic, sh := range st.topics {
		if _, ok := listed[topic]; ok {
			continue
		}
		i := sh.index(name)
		if i < 0 {
			continue
		}
		ns, seen := next[sh]
		if !seen {
			ns = st.rebuildLocked(sh, i, nil)
			next[sh] = ns
		}
		st.assignLocked(topic, ns)
	}
	for _, ns := range next {
		st.dropUnreferencedLocked(ns)
	}
}

// wipeWriteLocked clears the write perm of the group's queue data on every topic.
func (st *state) wipeWriteLocked(name string) {
	next := make(map[*shape]*shape)
	for topic, sh := range st.topics {
		ns, seen := next[sh]
		if !seen {
			ns = sh
			if i := sh.index(name); i >= 0 && sh.queues[i].Perm&remoting.PermWrite != 0 {
				q := sh.queues[i]
				q.Perm &^= remoting.PermWrite
				ns = st.rebuildLocked(sh, i, &q)
			}
			next[sh] = ns
		}
		if ns != sh {
			st.assignLocked(topic, ns)
		}
	}
	for _, ns := range next {
		st.dropUnreferencedLocked(ns)
	}
}

// unregisterLocked is RouteInfoManager.unRegisterBroker for one request: the address leaves the live table and
// its group (every id it has there); a group left without addresses leaves the broker table and every topic's
// queue data (expireLocked). When a group of acting-master brokers is left without master, its queue data loses
// the write perm.
func (st *state) unregisterLocked(cluster, addr, name string) {
	key := liveKey{cluster, addr}
	delete(st.live, key)
	delete(st.filters, key)
	bd, ok := st.brokers[name]
	if !ok {
		return // Java would fail with a NullPointerException in its topic cleanup; nothing to do
	}
	nb := *bd
	nb.BrokerAddrs = maps.Clone(bd.BrokerAddrs)
	maps.DeleteFunc(nb.BrokerAddrs, func(_ int64, v string) bool { return v == addr })
	if len(nb.BrokerAddrs) == 0 {
		st.expireLocked(name)
		return
	}
	st.brokers[name] = &nb
	if nb.EnableActingMaster && slices.Min(slices.Collect(maps.Keys(nb.BrokerAddrs))) > 0 {
		st.wipeWriteLocked(name)
	}
}

// destroyLocked is onChannelDestroy for one live broker: it finds the group holding the address in the
// broker's cluster (setupUnRegisterRequest) and unregisters it there. When no group holds it any more (the
// caller expired or removed it), only the live entry goes.
func (st *state) destroyLocked(key liveKey) {
	for _, name := range sortedKeys(st.brokers) {
		bd := st.brokers[name]
		if bd.Cluster != key.cluster {
			continue
		}
		for _, a := range bd.BrokerAddrs {
			if a == key.addr {
				st.unregisterLocked(key.cluster, key.addr, name)
				return
			}
		}
	}
	delete(st.live, key)
	delete(st.filters, key)
}

// registerBroker is DefaultRequestProcessor.registerBroker (103).
func (s *NameServer) registerBroker(c *conn, req *remoting.Command) *remoting.Command {
	h, err := remoting.ParseRegisterBrokerHeader(req)
	if err != nil {
		return remoting.NewResponse(req, remoting.SystemError, remotingCommandException+err.Error())
	}
	if h.BodyCRC32 != 0 && remoting.BodyCRC32(req.Body) != h.BodyCRC32 {
		return remoting.NewResponse(req, remoting.SystemError, "crc32 not match")
	}
	r := &registration{h: h, conn: c, timeout: s.opts.BrokerTimeout, deleteTopics: s.opts.DeleteTopicWithBrokerRegistration}
	if r.timeout == 0 {
		r.timeout = DefaultBrokerTimeout
	}
	switch {
	case req.Version < remoting.VersionRegisterBrokerBody:
		// Brokers before V3_0_11 send the topic config wrapper alone.
		r.body = &remoting.RegisterBrokerBody{}
		if len(req.Body) > 0 {
			if r.body, err = remoting.DecodeTopicConfigWrapper(req.Body); err != nil {
				return remoting.NewResponse(req, remoting.SystemError, "Failed to decode TopicConfigSerializeWrapper: "+err.Error())
			}
		}
	case len(req.Body) == 0:
		r.body, r.filters = &remoting.RegisterBrokerBody{}, true
	case h.Compressed:
		return remoting.NewResponse(req, remoting.SystemError,
			remotingCommandException+"Failed to decode RegisterBrokerBody: the compressed form is not simulated")
	default:
		if r.body, err = remoting.DecodeRegisterBrokerBody(req.Body); err != nil {
			return remoting.NewResponse(req, remoting.SystemError,
				remotingCommandException+"Failed to decode RegisterBrokerBody: "+err.Error())
		}
		r.filters = true
	}

	st := s.st
	st.mu.Lock()
	r.now = time.Now()
	_, known := st.live[liveKey{h.ClusterName, h.BrokerAddr}]
	res, ok := st.registerLocked(r)
	_, live := st.live[liveKey{h.ClusterName, h.BrokerAddr}]
	var kv *remoting.KVTable
	if ns, found := st.kv[NamespaceOrderTopicConfig]; found { // returnOrderTopicConfigToBroker, on by default
		kv = &remoting.KVTable{Table: maps.Clone(ns)}
	}
	st.mu.Unlock()
	if !ok {
		return remoting.NewResponse(req, remoting.SystemError, "register broker failed")
	}
	if live && c != nil {
		c.registered.Store(true)
		if !known {
			s.log.Info("new broker registered", "cluster", h.ClusterName, "broker", h.BrokerName, "id", h.BrokerID,
				"addr", h.BrokerAddr, "ha", h.HAServerAddr)
		}
	}
	resp := success(req, nil)
	resp.ExtFields = res.ExtFields()
	if kv != nil {
		resp.Body = kv.Encode()
	}
	return resp
}

// unregisterBroker is DefaultRequestProcessor.unregisterBroker (104). Java queues the request for a batch
// service and answers at once; here it is applied before the answer.
func (s *NameServer) unregisterBroker(req *remoting.Command) *remoting.Command {
	h, err := remoting.ParseUnregisterBrokerHeader(req)
	if err != nil {
		return remoting.NewResponse(req, remoting.SystemError, remotingCommandException+err.Error())
	}
	st := s.st
	st.mu.Lock()
	st.unregisterLocked(h.ClusterName, h.BrokerAddr, h.BrokerName)
	st.mu.Unlock()
	s.log.Info("broker unregistered", "cluster", h.ClusterName, "broker", h.BrokerName, "addr", h.BrokerAddr)
	return success(req, nil)
}

// channelDestroyed is BrokerHousekeepingService.onChannelClose: the brokers registered over a connection that
// closed are unregistered at once. Java unregisters the first broker it finds on the channel; a connection here
// may carry several registrations and all of them go.
func (s *NameServer) channelDestroyed(c *conn) {
	if !c.registered.Load() {
		return
	}
	st := s.st
	st.mu.Lock()
	var gone []liveKey
	for key, lb := range st.live {
		if lb.conn == c {
			gone = append(gone, key)
		}
	}
	for _, key := range gone {
		st.destroyLocked(key)
	}
	st.mu.Unlock()
	for _, key := range gone {
		s.log.Info("broker connection closed, broker removed", "cluster", key.cluster, "addr", key.addr)
	}
}

// scanLoop runs scanNotActiveBroker every Options.ScanInterval until the server closes.
func (s *NameServer) scanLoop() {
	defer s.wg.Done()
	every := s.opts.ScanInterval
	if every <= 0 {
		every = DefaultScanInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.shutdown:
			return
		case now := <-t.C:
			s.scanNotActiveBroker(now)
		}
	}
}

// scanNotActiveBroker is RouteInfoManager.scanNotActiveBroker: a broker whose last registration is older than
// its timeout has its connection closed and is unregistered.
func (s *NameServer) scanNotActiveBroker(now time.Time) {
	st := s.st
	st.mu.RLock()
	var expired []liveKey
	for key, lb := range st.live {
		if lb.expired(now) {
			expired = append(expired, key)
		}
	}
	st.mu.RUnlock()
	if len(expired) == 0 {
		return
	}
	var conns []*conn
	st.mu.Lock()
	for _, key := range expired {
		lb, ok := st.live[key]
		if !ok || !lb.expired(now) {
			continue // re-registered or gone meanwhile
		}
		if lb.conn != nil {
			conns = append(conns, lb.conn)
		}
		st.destroyLocked(key)
		s.log.Warn("the broker channel expired", "cluster", key.cluster, "addr", key.addr, "timeout", lb.timeout)
	}
	st.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// LiveBrokers returns how many broker addresses registered over TCP are live (in Java's brokerLiveTable).
func (s *NameServer) LiveBrokers() int {
	st := s.st
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.live)
}

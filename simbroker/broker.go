package simbroker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// Options configures a broker. Zero values take the defaults in parentheses.
type Options struct {
	// Addr is the listen address ("127.0.0.1:0"). A restarted broker listens on the address it had.
	Addr string
	// Cluster, Name and ID are the broker's cluster, group name and id: 0 is the master, more a slave.
	Cluster, Name string
	ID            int64
	// Master, for a slave, is its group's master: the slave serves the master's store (replication is instant).
	Master *Broker
	// Topics are the topics the broker holds (a master's; a slave serves its master's), besides its cluster's and
	// its group's, which every broker has.
	Topics []remoting.TopicConfig
	// NameServers are where the broker registers, every RegisterInterval (30s, as Java's
	// registerNameServerPeriod), with HeartbeatTimeout as its timeout there (the NameServer's default).
	NameServers      []string
	RegisterInterval time.Duration
	HeartbeatTimeout time.Duration
	// QueueCapacity is how many messages a queue keeps; older ones are dropped and counted (100,000).
	QueueCapacity int
	// DelayLevels are the delays of levels 1, 2, … (Java's messageDelayLevel "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m
	// 9m 10m 20m 30m 1h 2h"); tests shorten them.
	DelayLevels []time.Duration
	// LockExpiry is how long a queue lock lasts without renewal (60s, REBALANCE_LOCK_MAX_LIVE_TIME).
	LockExpiry time.Duration
	// MaxFrameSize bounds a request frame (remoting.DefaultMaxFrameSize).
	MaxFrameSize int
	// Without lists request codes answered "not supported", as by a broker that predates them (a 5.0 broker has
	// no BATCH_ACK_MESSAGE).
	Without []int32
	// Logger receives connection and protocol events (none).
	Logger *slog.Logger
}

// DefaultDelayLevels are Java's message delay levels.
var DefaultDelayLevels = []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute, 6 * time.Minute, 7 * time.Minute,
	8 * time.Minute, 9 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour}

// Broker is a simulated RocketMQ broker. Its methods are safe for concurrent use.
type Broker struct {
	opts    Options
	log     *slog.Logger
	store   *store
	clients *clients

	latency     atomic.Int64            // time.Duration added before each answer
	counts      map[int32]*atomic.Int64 // handled request code → requests received; fixed at New
	unsupported atomic.Int64
	writable    atomic.Bool                    // the broker's own permission (Java's brokerPermission): false refuses sends
	self        atomic.Pointer[netip.AddrPort] // the listen address, once started

	// life serialises Start, Stop, Kill and Close, which release mu while they wait for goroutines to end.
	life     sync.Mutex
	mu       sync.Mutex
	addr     string
	ln       net.Listener
	conns    map[*conn]struct{}
	running  bool
	closed   bool
	stop     chan struct{} // closed by Stop: ends the registration loop and suspended pulls
	wg       sync.WaitGroup
	timers   map[*time.Timer]struct{} // delayed messages not yet delivered
	register *registrar
	lost     []*registrar // registrars of a Kill, their NameServer connections left open until Start or Close
}

// New returns a broker; it listens once started.
func New(opts Options) *Broker {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.RegisterInterval <= 0 {
		opts.RegisterInterval = 30 * time.Second
	}
	if opts.QueueCapacity <= 0 {
		opts.QueueCapacity = 100_000
	}
	if len(opts.DelayLevels) == 0 {
		opts.DelayLevels = DefaultDelayLevels
	}
	if opts.LockExpiry <= 0 {
		opts.LockExpiry = 60 * time.Second
	}
	if opts.MaxFrameSize <= 0 {
		opts.MaxFrameSize = remoting.DefaultMaxFrameSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Broker{opts: opts, log: log.With("broker", opts.Name, "id", opts.ID), addr: opts.Addr,
		conns: map[*conn]struct{}{}, timers: map[*time.Timer]struct{}{}, counts: map[int32]*atomic.Int64{}}
	for _, code := range handledCodes {
		b.counts[code] = new(atomic.Int64)
	}
	b.writable.Store(opts.ID == 0)
	if opts.Master != nil {
		b.store = opts.Master.store
	} else {
		b.store = newStore(opts.QueueCapacity)
		// The topics every Java broker holds whatever its configuration (TopicConfigManager.init): its cluster's (16
		// queues) and its group's (1 queue), read-write with brokerTopicEnable and clusterTopicEnable on, as they
		// are by default. They also make a registration carry more than one topic, which a NameServer needs of a
		// broker's first one.
		const inheritRW = remoting.PermInherit | remoting.PermRead | remoting.PermWrite
		if opts.Cluster != "" {
			b.store.setTopic(remoting.TopicConfig{TopicName: opts.Cluster, ReadQueueNums: 16, WriteQueueNums: 16, Perm: inheritRW})
		}
		if opts.Name != "" {
			b.store.setTopic(remoting.TopicConfig{TopicName: opts.Name, ReadQueueNums: 1, WriteQueueNums: 1, Perm: inheritRW})
		}
		for _, t := range opts.Topics {
			b.store.setTopic(t)
		}
	}
	b.clients = newClients(b)
	return b
}

// Name is the broker's group name; ID its id (0 for the master).
func (b *Broker) Name() string { return b.opts.Name }
func (b *Broker) ID() int64    { return b.opts.ID }

// Cluster is the broker's cluster.
func (b *Broker) Cluster() string { return b.opts.Cluster }

// Addr is the address the broker listens on (once started: the port picked).
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// Start listens and starts registering with the NameServers. A stopped broker starts again on the address it
// had, with its messages and offsets.
func (b *Broker) Start() error {
	b.life.Lock()
	defer b.life.Unlock()
	b.closeLost() // a killed broker's host is back: its old connections are reset
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("simbroker: closed")
	}
	if b.running {
		b.mu.Unlock()
		return nil
	}
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		b.mu.Unlock()
		return fmt.Errorf("broker %s-%d: listen on %s: %w", b.opts.Name, b.opts.ID, b.addr, err)
	}
	b.ln, b.addr, b.running, b.stop = ln, ln.Addr().String(), true, make(chan struct{})
	if ap, err := netip.ParseAddrPort(b.addr); err == nil {
		b.self.Store(&ap) // parsed once: every stored message carries it
	}
	b.wg.Add(1)
	go b.accept(ln)
	b.log.Info("broker listening", "addr", b.addr, "cluster", b.opts.Cluster)
	if len(b.opts.NameServers) == 0 {
		b.mu.Unlock()
		return nil
	}
	// The first registration is done before Start returns, as BrokerController.start does it: a client that
	// asks a NameServer next finds the broker.
	reg, stop := newRegistrar(b), b.stop
	b.register = reg
	b.wg.Add(1)
	b.mu.Unlock()
	reg.registerAll()
	go reg.run(stop)
	return nil
}

// Stop stops the broker as a process stop would: it unregisters from its NameServers, closes every connection
// and stops listening. Its messages and offsets stay for Start.
func (b *Broker) Stop() {
	b.life.Lock()
	defer b.life.Unlock()
	b.halt(true)
}

// Kill stops the broker as a lost host would: it sends no UNREGISTER_BROKER and its NameServer connections stay
// open but silent (no FIN ever came), so a NameServer drops it only when its heartbeat timeout has passed
// (scanNotActiveBroker). Clients' connections are closed. Start brings it back; its messages and offsets stay.
func (b *Broker) Kill() {
	b.life.Lock()
	defer b.life.Unlock()
	b.halt(false)
}

func (b *Broker) halt(graceful bool) {
	b.mu.Lock()
	if !b.running {
		b.mu.Unlock()
		return
	}
	b.running = false
	close(b.stop)
	b.ln.Close()
	for c := range b.conns {
		c.close()
	}
	reg := b.register
	b.register = nil
	b.mu.Unlock()
	b.wg.Wait()
	if reg != nil {
		if graceful {
			reg.unregister()
		} else {
			b.mu.Lock()
			b.lost = append(b.lost, reg)
			b.mu.Unlock()
		}
	}
	b.clients.reset()
}

// closeLost closes the NameServer connections Kill left open.
func (b *Broker) closeLost() {
	b.mu.Lock()
	lost := b.lost
	b.lost = nil
	b.mu.Unlock()
	for _, reg := range lost {
		reg.closeConns()
	}
}

// Close stops the broker for good and drops the delayed messages it still holds.
func (b *Broker) Close() error {
	b.life.Lock()
	defer b.life.Unlock()
	b.halt(true)
	b.closeLost()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for t := range b.timers {
		t.Stop()
	}
	b.timers = map[*time.Timer]struct{}{}
	return nil
}

// SetLatency delays every answer by d (a slow broker).
func (b *Broker) SetLatency(d time.Duration) { b.latency.Store(int64(d)) }

// SetWritable turns the broker's own write permission on or off (Java's brokerPermission): a broker that is not
// writable refuses sends with NO_PERMISSION. Masters are writable, slaves not.
func (b *Broker) SetWritable(on bool) { b.writable.Store(on) }

// SetPerm changes a topic's permission on this broker group and registers the change with the NameServers at
// once (Java's updateTopic → registerBrokerAll).
func (b *Broker) SetPerm(topic string, perm int32) error {
	cfg, ok := b.store.topic(topic)
	if !ok {
		return fmt.Errorf("topic %s not on broker %s", topic, b.opts.Name)
	}
	cfg.Perm = perm
	b.store.setTopic(cfg)
	b.RegisterNow()
	return nil
}

// SetTopic creates or updates a topic on this broker group and registers it at once.
func (b *Broker) SetTopic(cfg remoting.TopicConfig) {
	b.store.setTopic(cfg)
	b.RegisterNow()
}

// RegisterNow registers with the NameServers without waiting for the interval.
func (b *Broker) RegisterNow() {
	b.mu.Lock()
	reg := b.register
	b.mu.Unlock()
	if reg != nil {
		reg.now()
	}
}

// Topics are the topics the broker holds, by name.
func (b *Broker) Topics() map[string]remoting.TopicConfig {
	topics, _ := b.store.topicConfigs()
	return topics
}

// Dropped is how many messages full queues dropped, oldest first.
func (b *Broker) Dropped() int64 { return b.store.droppedCount() }

// handledCodes are the request codes handle answers; every other one is "not supported".
var handledCodes = []int32{remoting.SendMessage, remoting.SendMessageV2, remoting.SendBatchMessage, remoting.PullMessage,
	remoting.QueryConsumerOffset, remoting.UpdateConsumerOffset, remoting.SearchOffsetByTimestamp, remoting.GetMaxOffset,
	remoting.GetMinOffset, remoting.HeartBeat, remoting.UnregisterClient, remoting.GetConsumerListByGroup,
	remoting.ConsumerSendMsgBack, remoting.LockBatchMQ, remoting.UnlockBatchMQ, remoting.PopMessage, remoting.AckMessage,
	remoting.BatchAckMessage, remoting.ChangeMessageInvisibleTime}

// RequestCount is how many requests of a code the broker received. Codes it does not handle are counted
// together, as Unsupported, so that a client sending odd codes cannot grow the table.
func (b *Broker) RequestCount(code int32) int64 {
	if n, ok := b.counts[code]; ok {
		return n.Load()
	}
	return 0
}

// Unsupported is how many requests of codes the broker does not handle it received.
func (b *Broker) Unsupported() int64 { return b.unsupported.Load() }

func (b *Broker) count(code int32) {
	if n, ok := b.counts[code]; ok {
		n.Add(1)
	} else {
		b.unsupported.Add(1)
	}
}

// conn is one client connection. Writes are serialised; the broker also sends requests on it (40).
type conn struct {
	nc     net.Conn
	wmu    sync.Mutex
	once   sync.Once
	done   chan struct{}
	remote netip.AddrPort
	opaque atomic.Int32 // ids of the requests the broker sends
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) write(cmd *remoting.Command) error {
	frame, err := remoting.Encode(cmd)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// A client that stops reading must not stall the handler writing to it (a notification of 40 is written by
	// another client's heartbeat): the write gives up, and the caller closes the connection.
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = c.nc.Write(frame)
	return err
}

// writeTimeout bounds one frame's write to a client.
const writeTimeout = 10 * time.Second

func (b *Broker) accept(ln net.Listener) {
	defer b.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return // closed by Stop
		}
		remote, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
		c := &conn{nc: nc, done: make(chan struct{}), remote: remote}
		b.mu.Lock()
		if !b.running || b.ln != ln {
			b.mu.Unlock()
			nc.Close()
			continue
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go b.serve(c)
	}
}

// serve reads requests until the connection ends. Each request is handled on a goroutine of its own, as Java's
// processor pools do; a suspended pull answers later from its own goroutine.
func (b *Broker) serve(c *conn) {
	defer b.wg.Done()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	defer func() {
		c.close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		b.clients.dropConn(c)
	}()
	r := remoting.NewReader(c.nc, b.opts.MaxFrameSize)
	for {
		req, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				b.log.Debug("read failed, closing the connection", "remote", c.remote, "err", err)
			}
			return
		}
		if req.IsResponse() {
			continue // an answer to a request the broker sent (40 is one-way; nothing else is sent)
		}
		b.count(req.Code)
		inflight.Go(func() {
			resp := b.handle(c, req)
			if resp != nil {
				b.reply(c, req, resp)
			}
		})
	}
}

// reply answers a request, after the configured latency, unless it was one-way.
func (b *Broker) reply(c *conn, req, resp *remoting.Command) {
	if req.IsOneway() {
		return
	}
	if d := time.Duration(b.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.done:
			t.Stop()
			return
		}
	}
	resp.Opaque, resp.Flag = req.Opaque, remoting.FlagResponse
	resp.HeaderType = req.HeaderType
	if err := c.write(resp); err != nil {
		c.close()
	}
}

// handle answers a request; nil means the answer comes later (a suspended pull) or never (one-way).
func (b *Broker) handle(c *conn, req *remoting.Command) *remoting.Command {
	if slices.Contains(b.opts.Without, req.Code) {
		return response(remoting.RequestCodeNotSupported, " request type "+strconv.Itoa(int(req.Code))+" not supported")
	}
	switch req.Code {
	case remoting.SendMessage, remoting.SendMessageV2, remoting.SendBatchMessage:
		return b.send(c, req)
	case remoting.PullMessage:
		return b.pull(c, req, true)
	case remoting.QueryConsumerOffset:
		return b.queryConsumerOffset(req)
	case remoting.UpdateConsumerOffset:
		return b.updateConsumerOffset(req)
	case remoting.SearchOffsetByTimestamp, remoting.GetMaxOffset, remoting.GetMinOffset:
		return b.offsetQuery(req)
	case remoting.HeartBeat:
		return b.clients.heartbeat(c, req)
	case remoting.UnregisterClient:
		return b.clients.unregister(c, req)
	case remoting.GetConsumerListByGroup:
		return b.clients.consumerList(req)
	case remoting.ConsumerSendMsgBack:
		return b.sendBack(c, req)
	case remoting.LockBatchMQ:
		return b.lockBatch(req)
	case remoting.UnlockBatchMQ:
		return b.unlockBatch(req)
	case remoting.PopMessage:
		return b.pop(c, req)
	case remoting.AckMessage, remoting.BatchAckMessage:
		return b.ack(c, req)
	case remoting.ChangeMessageInvisibleTime:
		return b.changeInvisible(c, req)
	}
	// NettyRemotingAbstract.processRequestCommand: no processor for the code.
	return response(remoting.RequestCodeNotSupported, " request type "+strconv.Itoa(int(req.Code))+" not supported")
}

// response is an answer with a code and remark; reply sets what it echoes from the request.
func response(code int32, remark string) *remoting.Command {
	return &remoting.Command{Code: code, Language: remoting.LanguageJava, Remark: remark}
}

func success(ext map[string]string, body []byte) *remoting.Command {
	r := response(remoting.Success, "")
	r.ExtFields, r.Body = ext, body
	return r
}

// hostPort is the broker's own address as stored in messages.
func (b *Broker) hostPort() netip.AddrPort {
	if ap := b.self.Load(); ap != nil {
		return *ap
	}
	ap, _ := netip.ParseAddrPort(b.Addr())
	return ap
}

// schedule runs f after d unless the broker is closed first.
func (b *Broker) schedule(d time.Duration, f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		b.mu.Lock()
		_, live := b.timers[t]
		delete(b.timers, t)
		b.mu.Unlock()
		if live {
			f()
		}
	})
	b.timers[t] = struct{}{}
}

package simbroker

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// registrar registers a broker with its NameServers, as BrokerController.registerBrokerAll does: at start, every
// RegisterInterval, and at once when a topic changes. It keeps one connection per NameServer, as Java's client
// does; closing them (Stop) is what removes the broker from the NameServers at once.
type registrar struct {
	b       *Broker
	trigger chan struct{}

	mu    sync.Mutex
	conns map[string]*nsConn // NameServer address → connection
	next  int32              // opaque
}

func newRegistrar(b *Broker) *registrar {
	return &registrar{b: b, trigger: make(chan struct{}, 1), conns: map[string]*nsConn{}}
}

type nsConn struct {
	c net.Conn
	r *remoting.Reader
}

func (r *registrar) now() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

func (r *registrar) run(stop <-chan struct{}) {
	defer r.b.wg.Done()
	t := time.NewTicker(r.b.opts.RegisterInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-r.trigger:
		}
		r.registerAll()
	}
}

// registerAll sends REGISTER_BROKER to every NameServer; a failure is logged and retried at the next round.
func (r *registrar) registerAll() {
	for _, ns := range r.b.opts.NameServers {
		req := registerRequest(r.b)
		if _, err := r.call(ns, req); err != nil {
			r.b.log.Warn("register with a NameServer", "namesrv", ns, "err", err)
		}
	}
}

// unregister sends UNREGISTER_BROKER to every NameServer (BrokerController.shutdown → unregisterBrokerAll) and
// closes the connections.
func (r *registrar) unregister() {
	for _, ns := range r.b.opts.NameServers {
		if _, err := r.call(ns, unregisterRequest(r.b)); err != nil {
			r.b.log.Debug("unregister from a NameServer", "namesrv", ns, "err", err)
		}
	}
	r.closeConns()
}

func (r *registrar) closeConns() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ns, c := range r.conns {
		c.c.Close()
		delete(r.conns, ns)
	}
}

// call sends a request on the NameServer's connection (dialled when missing) and reads its answer. Calls are one
// at a time: registration is rare.
func (r *registrar) call(ns string, req *remoting.Command) (*remoting.Command, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.conns[ns]
	if c == nil {
		nc, err := net.DialTimeout("tcp", ns, 3*time.Second)
		if err != nil {
			return nil, err
		}
		c = &nsConn{c: nc, r: remoting.NewReader(nc, remoting.DefaultMaxFrameSize)}
		r.conns[ns] = c
	}
	r.next++
	req.Opaque = r.next
	frame, err := remoting.Encode(req)
	if err == nil {
		_ = c.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err = c.c.Write(frame); err == nil {
			var resp *remoting.Command
			for resp, err = c.r.Read(); err == nil && (resp.Opaque != req.Opaque || !resp.IsResponse()); {
				resp, err = c.r.Read()
			}
			if err == nil {
				if resp.Code != remoting.Success {
					return resp, fmt.Errorf("code %d: %s", resp.Code, resp.Remark)
				}
				return resp, nil
			}
		}
	}
	c.c.Close()
	delete(r.conns, ns)
	return nil, err
}

// registerRequest is REGISTER_BROKER with every topic the broker holds (BrokerOuterAPI.registerBrokerAll). It
// carries the broker's MQVersion as its request version, as every Java broker's request does (BrokerStartup sets
// rocketmq.remoting.version to MQVersion.CURRENT_VERSION; RemotingCommand.setCmdVersion stamps it): a NameServer
// reads the body of a 103 older than V3_0_11 as a bare TopicConfigSerializeWrapper, so a version 0 request had
// its topics dropped.
func registerRequest(b *Broker) *remoting.Command {
	topics, version := b.store.topicConfigs()
	actingMaster := false // BrokerConfig.enableSlaveActingMaster's default; a 5.x broker always sends the field
	h := remoting.RegisterBrokerHeader{BrokerName: b.opts.Name, BrokerAddr: b.Addr(), ClusterName: b.opts.Cluster,
		HAServerAddr: b.Addr(), BrokerID: b.opts.ID, EnableActingMaster: &actingMaster}
	if t := b.opts.HeartbeatTimeout; t > 0 {
		ms := t.Milliseconds()
		h.HeartbeatTimeoutMillis = &ms
	}
	return remoting.NewRegisterBrokerRequest(h, &remoting.RegisterBrokerBody{TopicConfigTable: topics, DataVersion: version})
}

// unregisterRequest is UNREGISTER_BROKER (BrokerOuterAPI.unregisterBrokerAll), with the broker's version too.
func unregisterRequest(b *Broker) *remoting.Command {
	return remoting.NewUnregisterBrokerRequest(remoting.UnregisterBrokerHeader{BrokerName: b.opts.Name, BrokerAddr: b.Addr(),
		ClusterName: b.opts.Cluster, BrokerID: b.opts.ID})
}

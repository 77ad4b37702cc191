package dataplane

import (
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/xds/sidecar"
)

// serveNameServer answers the application's NameServer requests on one connection, each as it is done.
func (p *Proxy) serveNameServer(nc net.Conn) {
	var wmu sync.Mutex
	var inflight sync.WaitGroup
	defer inflight.Wait()
	r := remoting.NewReader(nc, p.opts.MaxFrameSize)
	for {
		req, err := r.Read()
		if err != nil {
			return
		}
		if req.IsResponse() {
			continue
		}
		inflight.Go(func() {
			resp := p.handleNameServer(req)
			if req.IsOneway() {
				return
			}
			frame, err := remoting.Encode(resp)
			if err != nil {
				p.log.Warn("encode a NameServer answer", "err", err)
				return
			}
			wmu.Lock()
			defer wmu.Unlock()
			_ = nc.SetWriteDeadline(time.Now().Add(p.opts.WriteTimeout))
			if _, err := nc.Write(frame); err != nil {
				nc.Close()
			}
		})
	}
}

// handleNameServer answers a route query (105) from the served route, with every group at the proxy's port for
// it, and the cluster info (106) of the groups the proxy has seen; other codes as a NameServer answers codes it
// does not support.
func (p *Proxy) handleNameServer(req *remoting.Command) *remoting.Command {
	switch req.Code {
	case remoting.GetRouteInfoByTopic:
		topic := req.Ext("topic")
		if topic == "" {
			return errorResponse(req, remoting.SystemError,
				"org.apache.rocketmq.remoting.exception.RemotingCommandException: the custom field <topic> is null")
		}
		r, err := p.route(topic)
		switch {
		case errors.Is(err, sidecar.ErrTopicNotFound):
			return errorResponse(req, remoting.TopicNotExist, "No topic route info in name server for the topic: "+topic)
		case err != nil:
			return errorResponse(req, remoting.SystemError, "sidecar: no route for "+topic+" from the control plane: "+err.Error())
		}
		local, err := p.learn(r.Data)
		if err != nil {
			return errorResponse(req, remoting.SystemError, err.Error())
		}
		standard := req.Version >= remoting.VersionStandardJSON || strings.EqualFold(req.Ext("acceptStandardJsonOnly"), "true")
		resp := errorResponse(req, remoting.Success, "")
		resp.Body = local.Encode(standard)
		return resp
	case remoting.GetBrokerClusterInfo:
		resp := errorResponse(req, remoting.Success, "")
		resp.Body = p.clusterInfo().Encode()
		return resp
	}
	return errorResponse(req, remoting.RequestCodeNotSupported, " request type "+itoa(int(req.Code))+" not supported")
}

// clusterInfo is the groups the proxy has seen, at its ports, in one cluster named after the sidecar.
func (p *Proxy) clusterInfo() *remoting.ClusterInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	ci := &remoting.ClusterInfo{BrokerAddrTable: map[string]remoting.BrokerData{}, ClusterAddrTable: map[string][]string{}}
	names := make([]string, 0, len(p.groups))
	for name, g := range p.groups {
		names = append(names, name)
		ci.BrokerAddrTable[name] = remoting.BrokerData{Cluster: sidecarCluster, BrokerName: name,
			BrokerAddrs: map[int64]string{0: g.ln.Addr().String()}}
	}
	slices.Sort(names)
	ci.ClusterAddrTable[sidecarCluster] = names
	return ci
}

// sidecarCluster is the one cluster the proxy's cluster info names: the application sees its broker groups
// through the sidecar, not their clusters.
const sidecarCluster = "rocketpilot-sidecar"

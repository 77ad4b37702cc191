package embedded

import (
	"strconv"
	"strings"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// faqApplyTopic is what FAQUrl.suggestTodo(FAQUrl.APPLY_TOPIC_URL) appends to a TOPIC_NOT_EXIST remark.
const faqApplyTopic = "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details."

// handle answers one request as the Java NameServer's processors do. It always returns a response; the caller
// drops it for one-way requests.
func (s *NameServer) handle(c *conn, req *remoting.Command) *remoting.Command {
	var resp *remoting.Command
	switch req.Code {
	case remoting.RegisterBroker:
		resp = s.registerBroker(c, req)
	case remoting.UnregisterBroker:
		resp = s.unregisterBroker(req)
	case remoting.GetRouteInfoByTopic:
		resp = s.getRouteInfoByTopic(req)
	case remoting.GetBrokerClusterInfo:
		resp = s.getBrokerClusterInfo(req)
	case remoting.GetAllTopicListFromNameServer:
		resp = s.getAllTopicList(req)
	case remoting.GetTopicsByCluster:
		resp = s.getTopicsByCluster(req)
	case remoting.GetKVConfig:
		resp = s.getKVConfig(req)
	case remoting.GetKVListByNamespace:
		resp = s.getKVListByNamespace(req)
	default:
		// The remoting layer's answer to a code no processor knows (NettyRemotingAbstract).
		resp = remoting.NewResponse(req, remoting.RequestCodeNotSupported,
			" request type "+strconv.Itoa(int(req.Code))+" not supported")
	}
	resp.HeaderType = s.opts.HeaderType
	resp.Version = s.opts.Version
	return resp
}

// remotingCommandException starts the remark of a request whose custom header or body does not decode: Java
// answers SYSTEM_ERROR with the exception's description.
const remotingCommandException = "org.apache.rocketmq.remoting.exception.RemotingCommandException: "

// field returns a required custom-header field. When it is absent Java's header decoding throws, and the
// remoting layer answers SYSTEM_ERROR with the exception's description.
func field(req *remoting.Command, name string) (string, *remoting.Command) {
	if v, ok := req.ExtFields[name]; ok {
		return v, nil
	}
	return "", remoting.NewResponse(req, remoting.SystemError, remotingCommandException+"the custom field <"+name+"> is null")
}

func success(req *remoting.Command, body []byte) *remoting.Command {
	resp := remoting.NewResponse(req, remoting.Success, "")
	resp.Body = body
	return resp
}

// getRouteInfoByTopic is ClientRequestProcessor.getRouteInfoByTopic.
func (s *NameServer) getRouteInfoByTopic(req *remoting.Command) *remoting.Command {
	topic, bad := field(req, "topic")
	if bad != nil {
		return bad
	}
	st := s.st
	st.mu.RLock()
	route, ok := st.routeLocked(topic)
	if ok && s.opts.OrderMessageEnable {
		route.OrderTopicConf = st.kv[NamespaceOrderTopicConfig][topic]
	}
	st.mu.RUnlock()
	if !ok {
		return remoting.NewResponse(req, remoting.TopicNotExist,
			"No topic route info in name server for the topic: "+topic+faqApplyTopic)
	}
	// Java parses the Boolean field with Boolean.parseBoolean: "true" in any case.
	standard := req.Version >= remoting.VersionStandardJSON || strings.EqualFold(req.Ext("acceptStandardJsonOnly"), "true")
	return success(req, route.Encode(standard))
}

func (s *NameServer) getBrokerClusterInfo(req *remoting.Command) *remoting.Command {
	st := s.st
	st.mu.RLock()
	ci := st.clusterInfoLocked()
	st.mu.RUnlock()
	return success(req, ci.Encode())
}

func disabled(req *remoting.Command) *remoting.Command {
	return remoting.NewResponse(req, remoting.SystemError, "disable")
}

func (s *NameServer) getAllTopicList(req *remoting.Command) *remoting.Command {
	if s.allTopicListOff.Load() {
		return disabled(req)
	}
	list := &remoting.TopicList{TopicList: s.st.sortedTopics()}
	return success(req, list.Encode())
}

func (s *NameServer) getTopicsByCluster(req *remoting.Command) *remoting.Command {
	if s.topicListOff.Load() { // Java checks the switch before it decodes the header
		return disabled(req)
	}
	cluster, bad := field(req, "cluster")
	if bad != nil {
		return bad
	}
	list := &remoting.TopicList{TopicList: s.st.topicsByCluster(cluster)}
	return success(req, list.Encode())
}

func (s *NameServer) getKVConfig(req *remoting.Command) *remoting.Command {
	namespace, bad := field(req, "namespace")
	if bad != nil {
		return bad
	}
	key, bad := field(req, "key")
	if bad != nil {
		return bad
	}
	if v, ok := s.st.kvValue(namespace, key); ok {
		resp := success(req, nil)
		resp.ExtFields = map[string]string{"value": v}
		return resp
	}
	return remoting.NewResponse(req, remoting.QueryNotFound, "No config item, Namespace: "+namespace+" Key: "+key)
}

func (s *NameServer) getKVListByNamespace(req *remoting.Command) *remoting.Command {
	namespace, bad := field(req, "namespace")
	if bad != nil {
		return bad
	}
	if t, ok := s.st.kvTable(namespace); ok {
		return success(req, t.Encode())
	}
	return remoting.NewResponse(req, remoting.QueryNotFound, "No config item, Namespace: "+namespace)
}

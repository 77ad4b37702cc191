package simbroker

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"

	"github.com/rocketpilot/rocketpilot/remoting"
)

// heartbeatData is HeartbeatData, the body of HEART_BEAT.
type heartbeatData struct {
	ClientID        string `json:"clientID"`
	ProducerDataSet []struct {
		GroupName string `json:"groupName"`
	} `json:"producerDataSet"`
	ConsumerDataSet []struct {
		GroupName           string `json:"groupName"`
		ConsumeType         string `json:"consumeType"`
		MessageModel        string `json:"messageModel"`
		SubscriptionDataSet []struct {
			Topic          string `json:"topic"`
			SubString      string `json:"subString"`
			ExpressionType string `json:"expressionType"`
		} `json:"subscriptionDataSet"`
	} `json:"consumerDataSet"`
}

// member is one client of a consumer group: its connection and subscriptions (topic → expression).
type member struct {
	conn *conn
	subs map[string]string
}

// clients is the broker's ConsumerManager: consumer groups, their members by client id, and what they subscribe.
type clients struct {
	b      *Broker
	mu     sync.Mutex
	groups map[string]map[string]*member // group → client id → member
}

func newClients(b *Broker) *clients { return &clients{b: b, groups: map[string]map[string]*member{}} }

// heartbeat registers a client's consumer groups (ClientManageProcessor.heartBeat → ConsumerManager.registerConsumer).
// Every group gets its retry topic; a clustering group whose members or subscriptions changed is told so
// (NOTIFY_CONSUMER_IDS_CHANGED to each member).
func (cs *clients) heartbeat(c *conn, req *remoting.Command) *remoting.Command {
	var hb heartbeatData
	if err := json.Unmarshal(req.Body, &hb); err != nil {
		return response(remoting.SystemError, "heartbeat body: "+err.Error())
	}
	var changed []string
	cs.mu.Lock()
	for _, cd := range hb.ConsumerDataSet {
		if cd.GroupName == "" {
			continue
		}
		g := cs.groups[cd.GroupName]
		if g == nil {
			g = map[string]*member{}
			cs.groups[cd.GroupName] = g
		}
		subs := map[string]string{}
		for _, s := range cd.SubscriptionDataSet {
			subs[s.Topic] = s.SubString
		}
		// ConsumerManager.registerConsumer: a new channel (r1) or new subscriptions (r2) change the group, and a
		// clustering group's members are told.
		old := g[hb.ClientID]
		if (old == nil || old.conn != c || !maps.Equal(old.subs, subs)) && cd.MessageModel != "BROADCASTING" {
			changed = append(changed, cd.GroupName)
		}
		g[hb.ClientID] = &member{conn: c, subs: subs}
	}
	cs.mu.Unlock()
	for _, cd := range hb.ConsumerDataSet {
		if cd.GroupName != "" {
			cs.b.retryTopic(cd.GroupName) // every heartbeat, as Java: created (and registered) the first time
		}
	}
	for _, g := range changed {
		cs.notify(g)
	}
	return success(nil, nil)
}

// unregister removes a client from a consumer group (UNREGISTER_CLIENT).
func (cs *clients) unregister(c *conn, req *remoting.Command) *remoting.Command {
	f := &headerFields{ext: req.ExtFields}
	clientID, group := f.str("clientID", true), f.str("consumerGroup", false)
	if f.err != nil {
		return response(remoting.SystemError, f.err.Error())
	}
	cs.mu.Lock()
	g := cs.groups[group]
	_, was := g[clientID]
	delete(g, clientID)
	if len(g) == 0 {
		delete(cs.groups, group)
	}
	cs.mu.Unlock()
	if was {
		cs.notify(group)
	}
	return success(nil, nil)
}

// dropConn removes every member registered on a closed connection (ClientHousekeepingService.onChannelClose).
func (cs *clients) dropConn(c *conn) {
	var changed []string
	cs.mu.Lock()
	for name, g := range cs.groups {
		for id, m := range g {
			if m.conn == c {
				delete(g, id)
				changed = append(changed, name)
			}
		}
		if len(g) == 0 {
			delete(cs.groups, name)
		}
	}
	cs.mu.Unlock()
	for _, g := range changed {
		cs.notify(g)
	}
}

// reset forgets every client: a stopped broker's connections are gone.
func (cs *clients) reset() {
	cs.mu.Lock()
	cs.groups = map[string]map[string]*member{}
	cs.mu.Unlock()
}

// consumerList answers GET_CONSUMER_LIST_BY_GROUP (ConsumerManageProcessor.getConsumerListByGroup).
func (cs *clients) consumerList(req *remoting.Command) *remoting.Command {
	f := &headerFields{ext: req.ExtFields}
	group := f.str("consumerGroup", true)
	if f.err != nil {
		return response(remoting.SystemError, f.err.Error())
	}
	ids := cs.members(group)
	if len(ids) == 0 {
		return response(remoting.SystemError, "no consumer for this group, "+group)
	}
	body, _ := json.Marshal(struct {
		ConsumerIDList []string `json:"consumerIdList"`
	}{ids})
	return success(nil, body)
}

func (cs *clients) members(group string) []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return slices.Sorted(maps.Keys(cs.groups[group]))
}

// subscription is a group's expression for a topic, from its members' heartbeats.
func (cs *clients) subscription(group, topic string) (string, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, m := range cs.groups[group] {
		if expr, ok := m.subs[topic]; ok {
			return expr, true
		}
	}
	return "", false
}

// notify sends NOTIFY_CONSUMER_IDS_CHANGED, one-way, to every member of a group (Broker2Client
// .notifyConsumerIdsChanged), so that they rebalance.
func (cs *clients) notify(group string) {
	cs.mu.Lock()
	var conns []*conn
	for _, m := range cs.groups[group] {
		if !slices.Contains(conns, m.conn) {
			conns = append(conns, m.conn)
		}
	}
	cs.mu.Unlock()
	for _, c := range conns {
		req := remoting.NewRequest(remoting.NotifyConsumerIdsChanged, map[string]string{"consumerGroup": group})
		req.Language, req.Flag, req.Opaque = remoting.LanguageJava, remoting.FlagOneway, c.opaque.Add(1)
		if err := c.write(req); err != nil {
			c.close()
		}
	}
}

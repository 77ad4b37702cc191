package server

import (
	"slices"
	"strings"

	"github.com/rocketpilot/rocketpilot/nameserver/remoting"
)

func sortRoute(r *remoting.TopicRouteData) {
	slices.SortFunc(r.QueueDatas, func(a, b remoting.QueueData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
	slices.SortFunc(r.BrokerDatas, func(a, b remoting.BrokerData) int { return strings.Compare(a.BrokerName, b.BrokerName) })
}

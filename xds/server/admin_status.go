package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rocketpilot/rocketpilot/routing"
)

// The model's TopicRoutes and TopicBindings as the table holds them, whatever their source (files or the
// Kubernetes API), for rocketctl get policies:
//
//	GET /api/v1/policies/rules    each TopicRoute's match and rules, in precedence order
//	GET /api/v1/bindings          each TopicBinding's topics, consumer groups and the connected proxies it selects

// PolicyRules is one TopicRoute of GET /api/v1/policies/rules: what it matches and what it does, each rule as a
// line ("drain broker-b", "send broker-a*20 broker-b*80").
type PolicyRules struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created,omitzero"`
	Match   []string  `json:"match"`
	Rules   []string  `json:"rules"`
}

// BindingRow is one TopicBinding of GET /api/v1/bindings.
type BindingRow struct {
	Name           string   `json:"name"`
	Topics         []string `json:"topics"`
	ConsumerGroups []string `json:"consumerGroups,omitempty"`
	// BoundProxies is how many connected proxies (by node id) the binding selects.
	BoundProxies int `json:"boundProxies"`
}

func (a *Admin) policyRules(w http.ResponseWriter, _ *http.Request) {
	out := []PolicyRules{}
	for _, p := range a.Table.Policies() {
		out = append(out, PolicyRules{Name: p.Name, Created: p.Created.UTC(), Match: matchLines(p.Match), Rules: ruleLines(&p)})
	}
	writeJSON(w, out)
}

func (a *Admin) bindings(w http.ResponseWriter, _ *http.Request) {
	out := []BindingRow{}
	for _, b := range a.Table.Bindings() {
		row := BindingRow{Name: b.Name, Topics: b.Topics, ConsumerGroups: b.ConsumerGroups}
		if row.Topics == nil {
			row.Topics = []string{}
		}
		if b.Selects != nil {
			row.BoundProxies = a.Table.Proxies().Count(b.Selects)
		}
		out = append(out, row)
	}
	writeJSON(w, out)
}

func matchLines(m routing.TopicMatch) []string {
	out := []string{}
	if len(m.Exact) > 0 {
		out = append(out, "exact "+strings.Join(m.Exact, ","))
	}
	if len(m.Prefix) > 0 {
		out = append(out, "prefix "+strings.Join(m.Prefix, ","))
	}
	if m.Regex != nil {
		out = append(out, "regex "+m.Regex.String())
	}
	return out
}

func ruleLines(p *routing.Policy) []string {
	out := []string{}
	for _, r := range []struct {
		name     string
		backends []routing.Backend
	}{{"routeQuery", p.RouteQuery}, {"send", p.Send}, {"consume", p.Consume}, {"ack", p.Ack}} {
		if len(r.backends) == 0 {
			continue
		}
		var bs []string
		for _, b := range r.backends {
			s := "cluster " + b.BrokerCluster
			if b.BrokerCluster == "" {
				s = strings.Join(b.BrokerNames, ",")
			}
			if b.Weighted {
				s += fmt.Sprintf("*%d", b.Weight)
			}
			bs = append(bs, s)
		}
		out = append(out, r.name+" "+strings.Join(bs, " "))
	}
	if len(p.Drain) > 0 {
		out = append(out, "drain "+strings.Join(p.Drain, ","))
	}
	if p.Ordered {
		out = append(out, "ordered")
	}
	if p.Pop != nil {
		out = append(out, fmt.Sprintf("pop %s invisible %s", strings.Join(p.Pop.ConsumerGroups, ","), p.Pop.InvisibleTime))
	}
	return out
}

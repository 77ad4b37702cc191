package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/rocketpilot/rocketpilot/controllers"
	"github.com/rocketpilot/rocketpilot/crds/v1alpha1"
	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/remoting"
	"github.com/rocketpilot/rocketpilot/routing"
	"github.com/rocketpilot/rocketpilot/xds/server"
)

// The status kinds of get: sources, changes, policies, brokers and resources, read from the admin API.

// clock is the time ages are counted to (a test fixes it).
var clock = time.Now

// sourceRow is one row of get sources: a NameServer of a watcher (the --namesrv/--demo one, "namesrv", or a
// NameServerSource's, "nss:NAMESPACE/NAME"), or a file of --config.
type sourceRow struct {
	Source string `json:"source"`
	// Type is NameServer or File.
	Type string `json:"type"`
	// Target is the NameServer's address or the file's name.
	Target string `json:"target"`
	// Synced: the watcher's first sync is done; a file's documents are all accepted.
	Synced bool `json:"synced"`
	// Status: Reachable, Unreachable or Pending (not asked yet) for a NameServer; Accepted or Rejected for a file.
	Status      string    `json:"status"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastPoll is when the watcher last polled the NameServers' broker tables and topic lists (answered or not).
	LastPoll time.Time `json:"lastPoll,omitzero"`
	// Error is the NameServer's last error, or why a file's documents were rejected.
	Error string `json:"error,omitempty"`
	// NameServers only.
	Mode      watcher.Mode `json:"mode,omitempty"`
	Topics    int          `json:"topics"`
	Brokers   int          `json:"brokers"`
	Errors    int64        `json:"errors"`
	LatencyMS float64      `json:"latencyMs"`
	// Files only: their documents, and how many were accepted.
	Documents int `json:"documents,omitempty"`
	Accepted  int `json:"accepted,omitempty"`
}

func getSources(ctx context.Context, g *globals, f *getFlags, names []string) error {
	var statuses []watcher.Status
	if err := g.getJSON(ctx, "/api/v1/sources", nil, &statuses); err != nil {
		return err
	}
	var docs []controllers.FileResourceStatus
	if err := g.getJSON(ctx, "/api/v1/resources", nil, &docs); err != nil {
		return err
	}
	return printNamed(f.view(g), sourceRows(statuses, docs), "source", names, func(r sourceRow) string { return r.Source },
		func(g *view, rows []sourceRow) error { return printSources(g, rows, clock()) })
}

// sourceRows are the watchers' NameServers, sorted by source, then the files of --config by name.
func sourceRows(statuses []watcher.Status, docs []controllers.FileResourceStatus) []sourceRow {
	var rows []sourceRow
	slices.SortStableFunc(statuses, func(a, b watcher.Status) int { return strings.Compare(a.Source, b.Source) })
	for _, s := range statuses {
		for _, ns := range s.NameServers {
			r := sourceRow{Source: s.Source, Type: "NameServer", Target: ns.Addr, Synced: s.Synced,
				LastSuccess: ns.LastSuccess, LastPoll: s.LastDiscovery, Error: ns.LastError, Mode: s.Mode, Topics: s.Topics,
				Brokers: ns.Brokers, Errors: ns.Errors, LatencyMS: float64(ns.LastLatency.Microseconds()) / 1000}
			r.Status = ns.State()
			rows = append(rows, r)
		}
	}
	byFile := map[string]*sourceRow{}
	var files []string
	for _, d := range docs {
		r := byFile[d.File]
		if r == nil {
			r = &sourceRow{Source: "config", Type: "File", Target: d.File}
			byFile[d.File] = r
			files = append(files, d.File)
		}
		r.Documents++
		if d.Accepted {
			r.Accepted++
		} else if r.Error == "" {
			r.Error = documentName(d) + ": " + d.Error
		}
	}
	slices.Sort(files)
	for _, name := range files {
		r := byFile[name]
		r.Synced, r.Status = r.Accepted == r.Documents, "Accepted"
		if !r.Synced {
			r.Status = "Rejected"
		}
		rows = append(rows, *r)
	}
	return rows
}

// documentName is a document's KIND NAMESPACE/NAME, or KIND NAME without a namespace; a document that could not
// be read has none.
func documentName(d controllers.FileResourceStatus) string {
	name := d.Name
	if d.Namespace != "" {
		name = d.Namespace + "/" + name
	}
	return strings.TrimSpace(d.Kind + " " + name)
}

// ageOr is the age of t, or what when t is zero.
func ageOr(t, now time.Time, what string) string {
	if t.IsZero() {
		return what
	}
	return age(t, now)
}

func printSources(g *view, rows []sourceRow, now time.Time) error {
	if done, err := printData(g, rows, "source", func(r sourceRow) string { return r.Source }); done {
		return err
	}
	t := &table{headers: []string{"SOURCE", "TYPE", "TARGET", "SYNCED", "STATUS", "LAST SUCCESS", "LAST POLL", "ERROR"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "MODE", "TOPICS", "BROKERS", "ERRORS", "LATENCY")
	}
	for _, r := range rows {
		status := r.Status
		if r.Type == "File" {
			status = fmt.Sprintf("%s %d/%d", r.Status, r.Accepted, r.Documents)
			if !r.Synced {
				status = fmt.Sprintf("%s %d/%d", r.Status, r.Documents-r.Accepted, r.Documents)
			}
		}
		last, poll := ageOr(r.LastSuccess, now, "<never>"), ageOr(r.LastPoll, now, "<never>")
		if r.Type == "File" {
			last, poll = "-", "-"
		}
		row := []string{r.Source, r.Type, r.Target, strconv.FormatBool(r.Synced), status, last, poll, orNone(r.Error)}
		if g.output == "wide" {
			if r.Type == "File" {
				row = append(row, "-", "-", "-", "-", "-")
			} else {
				row = append(row, string(r.Mode), strconv.Itoa(r.Topics), strconv.Itoa(r.Brokers), strconv.FormatInt(r.Errors, 10),
					strconv.FormatFloat(r.LatencyMS, 'f', 1, 64)+"ms")
			}
		}
		t.add(row...)
	}
	return g.printTable(t)
}

// getChanges lists the change log, or with names the changes of those topics (GET /api/v1/changes?topic=).
func getChanges(ctx context.Context, g *globals, f *getFlags, names []string) error {
	var changes []server.Change
	if len(names) == 0 {
		if err := g.getJSON(ctx, "/api/v1/changes", nil, &changes); err != nil {
			return err
		}
	}
	for _, n := range names {
		var cs []server.Change
		if err := g.getJSON(ctx, "/api/v1/changes", url.Values{"topic": {n}}, &cs); err != nil {
			return err
		}
		changes = append(changes, cs...)
	}
	slices.SortStableFunc(changes, func(a, b server.Change) int { return int(a.Version) - int(b.Version) })
	changes = slices.CompactFunc(changes, func(a, b server.Change) bool { return a.Version == b.Version })
	return printChanges(f.view(g), changes, clock())
}

func printChanges(g *view, changes []server.Change, now time.Time) error {
	if done, err := printData(g, changes, "change", func(c server.Change) string { return strconv.FormatUint(c.Version, 10) }); done {
		return err
	}
	t := &table{headers: []string{"AGE", "VERSION", "TOPICS", "BROKER SETS", "BROKERS", "SCOPES", "CHANGED"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "TIME")
	}
	yes := func(b bool) string {
		if b {
			return "changed"
		}
		return "-"
	}
	for _, c := range changes {
		shown := c.Names
		if g.output != "wide" && len(shown) > 3 {
			shown = shown[:3]
		}
		named := strings.Join(shown, ",")
		if more := c.Topics - len(shown); more > 0 {
			named += fmt.Sprintf(" (+%d)", more)
		}
		row := []string{age(c.Time, now), strconv.FormatUint(c.Version, 10), strconv.Itoa(c.Topics), strconv.Itoa(c.BrokerSets),
			yes(c.Brokers), yes(c.Scopes), orNone(named)}
		if g.output == "wide" {
			row = append(row, c.Time.UTC().Format(time.RFC3339Nano))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

// policyRow is one row of get policies: a TopicRoute or a TopicBinding as the model holds it.
type policyRow struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// TopicRoutes: what they match, their rules, the topics that follow them and those an older one took.
	Match           []string `json:"match,omitempty"`
	Rules           []string `json:"rules,omitempty"`
	Matched         int      `json:"matched"`
	Overridden      int      `json:"overridden,omitempty"`
	OverriddenBy    []string `json:"overriddenBy,omitempty"`
	UnknownBackends []string `json:"unknownBackends,omitempty"`
	// TopicBindings: their topics, consumer groups, and the connected proxies they select.
	Topics         []string `json:"topics,omitempty"`
	ConsumerGroups []string `json:"consumerGroups,omitempty"`
	BoundProxies   int      `json:"boundProxies,omitempty"`
}

func getPolicies(ctx context.Context, g *globals, f *getFlags, names []string) error {
	var status []server.PolicyRow
	if err := g.getJSON(ctx, "/api/v1/policies", nil, &status); err != nil {
		return err
	}
	var rules []server.PolicyRules
	if err := g.getJSON(ctx, "/api/v1/policies/rules", nil, &rules); err != nil {
		return err
	}
	var bindings []server.BindingRow
	if err := g.getJSON(ctx, "/api/v1/bindings", nil, &bindings); err != nil {
		return err
	}
	return printNamed(f.view(g), policyRows(status, rules, bindings), "policy", names, func(r policyRow) string { return r.Name }, printPolicies)
}

// policyRows are the TopicRoutes in precedence order, then the TopicBindings.
func policyRows(status []server.PolicyRow, rules []server.PolicyRules, bindings []server.BindingRow) []policyRow {
	var rows []policyRow
	for _, s := range status {
		r := policyRow{Kind: "TopicRoute", Name: s.Name, Matched: s.Matched, Overridden: s.Overridden,
			OverriddenBy: s.OverriddenBy, UnknownBackends: s.UnknownBackends}
		if i := slices.IndexFunc(rules, func(p server.PolicyRules) bool { return p.Name == s.Name }); i >= 0 {
			r.Match, r.Rules = rules[i].Match, rules[i].Rules
		}
		rows = append(rows, r)
	}
	for _, b := range bindings {
		rows = append(rows, policyRow{Kind: "TopicBinding", Name: b.Name, Matched: len(b.Topics), Topics: b.Topics,
			ConsumerGroups: b.ConsumerGroups, BoundProxies: b.BoundProxies})
	}
	return rows
}

func printPolicies(g *view, rows []policyRow) error {
	if done, err := printData(g, rows, "", func(r policyRow) string { return strings.ToLower(r.Kind) + "/" + r.Name }); done {
		return err
	}
	t := &table{headers: []string{"KIND", "NAME", "TOPICS", "OVERRIDDEN", "PROXIES", "RULES"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "MATCH", "OVERRIDDEN BY", "UNKNOWN BACKENDS")
	}
	for _, r := range rows {
		if r.Kind == "TopicBinding" {
			rule := "topics " + strings.Join(r.Topics, ",")
			if len(r.ConsumerGroups) > 0 {
				rule += "; groups " + strings.Join(r.ConsumerGroups, ",")
			}
			row := []string{r.Kind, r.Name, strconv.Itoa(r.Matched), "-", strconv.Itoa(r.BoundProxies), rule}
			if g.output == "wide" {
				row = append(row, "-", "-", "-")
			}
			t.add(row...)
			continue
		}
		row := []string{r.Kind, r.Name, strconv.Itoa(r.Matched), strconv.Itoa(r.Overridden), "-", orNone(strings.Join(r.Rules, "; "))}
		if g.output == "wide" {
			row = append(row, orNone(strings.Join(r.Match, "; ")), orNone(strings.Join(r.OverriddenBy, ",")),
				orNone(strings.Join(r.UnknownBackends, ",")))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

// brokerRow is one broker group of get brokers: where it is (the NameServers' cluster tables, GET /api/v1/brokers)
// and the perms the topics' routes give it (from the served broker sets, GET /api/v1/brokersets).
type brokerRow struct {
	routing.Broker
	// Perms are the perms the group has in the served broker sets, each once, as mqadmin writes them.
	Perms []string `json:"perms"`
	// BrokerSets is how many served broker sets the group is in.
	BrokerSets int `json:"brokerSets"`
}

func getBrokers(ctx context.Context, g *globals, f *getFlags, names []string) error {
	var brokers []routing.Broker
	if err := g.getJSON(ctx, "/api/v1/brokers", nil, &brokers); err != nil {
		return err
	}
	var sets []server.BrokerSetRow
	if err := g.getJSON(ctx, "/api/v1/brokersets", nil, &sets); err != nil {
		return err
	}
	return printNamed(f.view(g), brokerRows(brokers, sets), "broker", names, func(r brokerRow) string { return r.Name }, printBrokers)
}

func brokerRows(brokers []routing.Broker, sets []server.BrokerSetRow) []brokerRow {
	var rows []brokerRow
	for _, b := range brokers {
		r := brokerRow{Broker: b, Perms: []string{}}
		for _, s := range sets {
			for _, m := range s.Members {
				if m.BrokerName == b.Name && m.Cluster == b.Cluster {
					r.BrokerSets++
					r.Perms = append(r.Perms, remoting.PermString(m.Perm))
				}
			}
		}
		slices.Sort(r.Perms)
		slices.Reverse(r.Perms) // RW- before R-- before -W-
		r.Perms = slices.Compact(r.Perms)
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b brokerRow) int {
		if c := strings.Compare(a.Cluster, b.Cluster); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return rows
}

func printBrokers(g *view, rows []brokerRow) error {
	if done, err := printData(g, rows, "broker", func(r brokerRow) string { return r.Name }); done {
		return err
	}
	t := &table{headers: []string{"NAME", "CLUSTER", "MASTER", "REPLICAS", "PERMS"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "ZONE", "BROKER SETS", "ADDRESSES")
	}
	for _, r := range rows {
		master, replicas := "<none>", 0
		var addrs []string
		for _, a := range r.Addrs {
			if a.ID == 0 {
				master = a.Addr
			} else {
				replicas++
			}
			addrs = append(addrs, fmt.Sprintf("%d=%s", a.ID, a.Addr))
		}
		row := []string{r.Name, r.Cluster, master, strconv.Itoa(replicas), orNone(strings.Join(r.Perms, ","))}
		if g.output == "wide" {
			row = append(row, orNone(r.Zone), strconv.Itoa(r.BrokerSets), strings.Join(addrs, ","))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

// getResources lists the documents of serve --config's files: each accepted, or why not (GET /api/v1/resources).
func getResources(ctx context.Context, g *globals, f *getFlags, names []string) error {
	return getListed(ctx, f.view(g), "/api/v1/resources", "resource", names, resourceName, printResources)
}

// resourceName is a document's NAMESPACE/NAME (NAME without a namespace), what get resources takes.
func resourceName(d controllers.FileResourceStatus) string {
	if d.Namespace == "" {
		return d.Name
	}
	return d.Namespace + "/" + d.Name
}

func printResources(g *view, docs []controllers.FileResourceStatus) error {
	if done, err := printData(g, docs, "", func(d controllers.FileResourceStatus) string {
		return strings.ToLower(d.Kind) + "/" + resourceName(d)
	}); done {
		return err
	}
	t := &table{headers: []string{"FILE", "KIND", "NAMESPACE", "NAME", "ACCEPTED", "ERROR"}}
	if g.output == "wide" {
		t.headers = append(t.headers, "CONDITIONS")
	}
	for _, d := range docs {
		row := []string{d.File, orNone(d.Kind), orNone(d.Namespace), orNone(d.Name), strconv.FormatBool(d.Accepted), orNone(d.Error)}
		if g.output == "wide" {
			row = append(row, orNone(conditionsOf(d.Status)))
		}
		t.add(row...)
	}
	return g.printTable(t)
}

// conditionsOf summarizes a status's conditions as TYPE=STATUS, comma-separated.
func conditionsOf(status any) string {
	var s struct {
		Conditions []metav1.Condition `json:"conditions"`
	}
	b, _ := json.Marshal(status)
	if json.Unmarshal(b, &s) != nil {
		return ""
	}
	var out []string
	for _, c := range s.Conditions {
		out = append(out, c.Type+"="+string(c.Status))
	}
	return strings.Join(out, ",")
}

// orConfigFiles runs a Kubernetes kind's get; without a usable kubeconfig it reads the kind from the admin API's
// --config documents instead (the server's file source), and says so on stderr. A server without --config files
// leaves the Kubernetes error, with a pointer to get resources.
func orConfigFiles(kind string, kube func(context.Context, *globals, *getFlags, []string) error) func(context.Context, *globals, *getFlags, []string) error {
	return func(ctx context.Context, g *globals, f *getFlags, names []string) error {
		_, _, kubeErr := g.kube.client()
		if kubeErr == nil {
			return kube(ctx, g, f, names)
		}
		var docs []controllers.FileResourceStatus
		if err := g.getJSON(ctx, "/api/v1/resources", nil, &docs); err != nil {
			return fmt.Errorf("%w (and the admin API at %s, which serves --config files, cannot be read: %v)", kubeErr, g.server, err)
		}
		if len(docs) == 0 {
			return fmt.Errorf("%w; the server at %s has no --config files either (rocketctl get resources lists them)", kubeErr, g.server)
		}
		return getConfigKind(g, f, kind, docs, names)
	}
}

// getConfigKind prints the accepted documents of a kind as the Kubernetes kind prints its objects (their status
// as the file source fills it, no creation time), and counts the rejected ones on stderr.
func getConfigKind(g *globals, f *getFlags, kind string, docs []controllers.FileResourceStatus, names []string) error {
	fmt.Fprintf(g.errOut, "(no usable kubeconfig: %ss from the --config files of the server at %s)\n", kind, g.server)
	var objs []client.Object
	rejected := 0
	why := map[string]string{} // a name asked for whose document was rejected: why
	for _, d := range docs {
		if d.Kind != kind || len(names) > 0 && !slices.Contains(names, d.Name) ||
			g.kube.namespace != "" && !g.kube.allNamespaces && d.Namespace != g.kube.namespace {
			continue
		}
		if !d.Accepted {
			rejected++
			if len(names) > 0 {
				why[d.Name] = d.File + ": " + d.Error
			}
			continue
		}
		meta := metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, Annotations: map[string]string{"rocketpilot.io/file": d.File}}
		status, _ := json.Marshal(d.Status)
		var obj client.Object
		switch kind {
		case "NameServerSource":
			o := &v1alpha1.NameServerSource{ObjectMeta: meta}
			json.Unmarshal(status, &o.Status)
			obj = o
		case "TopicRoute":
			o := &v1alpha1.TopicRoute{ObjectMeta: meta}
			json.Unmarshal(status, &o.Status)
			obj = o
		case "TopicBinding":
			o := &v1alpha1.TopicBinding{ObjectMeta: meta}
			json.Unmarshal(status, &o.Status)
			obj = o
		}
		obj.GetObjectKind().SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
		objs = append(objs, obj)
	}
	if rejected > 0 {
		fmt.Fprintf(g.errOut, "(%d %s document(s) rejected: rocketctl get resources says why)\n", rejected, kind)
	}
	slices.SortFunc(objs, func(a, b client.Object) int {
		return strings.Compare(a.GetNamespace()+"/"+a.GetName(), b.GetNamespace()+"/"+b.GetName())
	})
	missing := notFound(names, objs, func(o client.Object) string { return o.GetName() })
	if len(objs) > 0 || len(names) == 0 {
		if err := printKube(f.view(g), strings.ToLower(kind), objs, g.kube.namespace == "" || g.kube.allNamespaces,
			kubeColumns[kind].headers, kubeColumns[kind].cells); err != nil {
			return err
		}
	}
	var unknown []string
	var reasons []string
	for _, m := range missing {
		if w, ok := why[m]; ok {
			reasons = append(reasons, fmt.Sprintf("%s %q was rejected: %s", strings.ToLower(kind), m, w))
		} else {
			unknown = append(unknown, m)
		}
	}
	if err := missingError(strings.ToLower(kind), unknown); err != nil {
		reasons = append(reasons, err.Error())
	}
	if len(reasons) > 0 {
		return errors.New(strings.Join(reasons, "; "))
	}
	return nil
}

package server

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// NameList is GET /api/v1/names/{kind}: the names of one kind that start with ?prefix=, sorted, at most ?limit=
// of them (50 by default, 1000 at most, which 0 also means). More is set when the limit cut the list. It is what shell completion asks:
// names only, the list cut on the server, so that completing a topic of a million costs a page.
type NameList struct {
	Names []string `json:"names"`
	More  bool     `json:"more,omitempty"`
}

// nameKinds are the kinds GET /api/v1/names/{kind} lists, each with the names it starts from.
var nameKinds = map[string]func(a *Admin) []string{
	"proxies": func(a *Admin) []string {
		var nodes []string
		for _, s := range a.Cache.Streams() {
			nodes = append(nodes, s.Node)
		}
		return nodes
	},
	"clusters": func(a *Admin) []string {
		var names []string
		for _, c := range a.Cache.ServedClusters() {
			names = append(names, c.Cluster.Name)
		}
		return names
	},
	"brokersets": func(a *Admin) []string {
		var hashes []string
		for _, s := range a.Table.BrokerSets() {
			hashes = append(hashes, s.Hash)
		}
		return hashes
	},
}

func (a *Admin) names(w http.ResponseWriter, r *http.Request) {
	kind, prefix := r.PathValue("kind"), r.URL.Query().Get("prefix")
	limit, ok := limitParam(w, r, 50)
	if limit == 0 || limit > maxNames { // completion never needs all of 1M topics, and the table's lock is shared
		limit = maxNames
	}
	if !ok {
		return
	}
	out := NameList{Names: []string{}}
	if kind == "topics" { // the table's sorted names: a page, whatever the number of topics
		names, total := a.Table.TopicNames(prefix, "", limit)
		out.Names = append(out.Names, names...)
		out.More = len(names) < total
		writeJSON(w, out)
		return
	}
	all, known := nameKinds[kind]
	if !known {
		kinds := []string{"topics"}
		for k := range nameKinds {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		writeError(w, http.StatusNotFound, "no names of kind "+strconv.Quote(kind)+": the kinds are "+strings.Join(kinds, ", "))
		return
	}
	names := slices.DeleteFunc(all(a), func(n string) bool { return !strings.HasPrefix(n, prefix) })
	slices.Sort(names)
	names = slices.Compact(names)
	if limit > 0 && len(names) > limit {
		names, out.More = names[:limit], true
	}
	out.Names = append(out.Names, names...)
	writeJSON(w, out)
}

// maxNames bounds one names answer, whatever ?limit= asks.
const maxNames = 1000

// limitParam is the request's ?limit= (def when absent; 0 means no limit), or answers 400 and returns false.
func limitParam(w http.ResponseWriter, r *http.Request, def int) (int, bool) {
	l := r.URL.Query().Get("limit")
	if l == "" {
		return def, true
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "limit must be a non-negative integer")
		return 0, false
	}
	return n, true
}

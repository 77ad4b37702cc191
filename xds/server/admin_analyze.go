package server

import (
	"encoding/json"
	"net/http"

	"github.com/rocketpilot/rocketpilot/analyze"
)

// analyzeModel answers GET /api/v1/analyze: every problem package analyze finds in the live model, its connected
// proxies, the sources' statuses and the file source's documents, as a JSON list of analyze.Problem (errors
// first). rocketctl analyze prints it.
func (a *Admin) analyzeModel(w http.ResponseWriter, _ *http.Request) {
	in := analyze.Input{Table: a.Table, TopicsKnown: true, ProxiesKnown: true}
	// Sources and Resources are the owners' types (watcher statuses, file documents): read as the API shows them.
	if err := reread(a.Sources, &in.Sources); err != nil {
		writeError(w, http.StatusInternalServerError, "sources: "+err.Error())
		return
	}
	if err := reread(a.Resources, &in.Documents); err != nil {
		writeError(w, http.StatusInternalServerError, "resources: "+err.Error())
		return
	}
	out := analyze.Run(in)
	if out == nil {
		out = []analyze.Problem{}
	}
	writeJSON(w, out)
}

// reread decodes what view returns (nothing when view is nil) into v through its JSON.
func reread(view func() any, v any) error {
	if view == nil {
		return nil
	}
	b, err := json.Marshal(view())
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

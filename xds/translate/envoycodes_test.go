package translate

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// docTable returns the rows of the Markdown table that follows the line "<!-- table: name -->" in a doc, each as
// its trimmed cells, header and separator rows left out (a row is kept when its first cell is a number). The table
// must be there, its header at least; it may have no rows.
func docTable(t *testing.T, doc, name string) [][]string {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := slices.Index(lines, "<!-- table: "+name+" -->")
	if start < 0 {
		t.Fatalf("%s has no table marked <!-- table: %s -->", doc, name)
	}
	if start+1 >= len(lines) || !strings.HasPrefix(lines[start+1], "|") {
		t.Fatalf("%s: no table follows <!-- table: %s -->", doc, name)
	}
	var rows [][]string
	for _, line := range lines[start+1:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		if _, err := strconv.Atoi(strings.Trim(cells[0], "`")); err == nil {
			rows = append(rows, cells)
		}
	}
	return rows
}

// TestDocsListTheCodesEnvoysFilterDispatches pins docs/xds.md to Envoy's rule: the RocketMQ filter handles only
// the request codes of the switch in ConnectionManager::dispatch (contrib/rocketmq_proxy/filters/network/source/
// conn_manager.cc) and answers every other one "Request not supported". The docs' table of dispatched codes must
// list exactly EnvoyDispatchedCodes, and every code rocketpilot's routes match must be one Envoy routes (a
// dispatched code the filter answers itself, such as a heartbeat, never uses a route entry) or be
// in the docs' table of route entries Envoy never uses, naming the client of rocketpilot that uses it. Today that
// table has one row, pull (11, PullCodes: the pop routes the Go sidecar reads); a code added to SendCodes,
// ConsumeCodes, AckCodes or PullCodes that Envoy never dispatches fails here until the docs name its user.
func TestDocsListTheCodesEnvoysFilterDispatches(t *testing.T) {
	const doc = "../../docs/xds.md"
	if !slices.IsSorted(EnvoyDispatchedCodes) || len(slices.Compact(slices.Clone(EnvoyDispatchedCodes))) != len(EnvoyDispatchedCodes) {
		t.Fatalf("EnvoyDispatchedCodes %v: want ascending, without repeats", EnvoyDispatchedCodes)
	}
	code := func(row []string) int32 {
		n, _ := strconv.Atoi(strings.Trim(row[0], "`"))
		return int32(n)
	}

	var dispatched []int32
	for _, row := range docTable(t, doc, "envoy-dispatched-codes") {
		dispatched = append(dispatched, code(row))
	}
	if len(dispatched) == 0 {
		t.Fatalf("%s: the table of codes Envoy's filter dispatches has no rows", doc)
	}
	slices.Sort(dispatched)
	if !slices.Equal(dispatched, EnvoyDispatchedCodes) {
		t.Errorf("%s lists %v as the codes Envoy's filter dispatches; EnvoyDispatchedCodes is %v", doc, dispatched, EnvoyDispatchedCodes)
	}

	for _, c := range EnvoyRoutedCodes {
		if !slices.Contains(EnvoyDispatchedCodes, c) {
			t.Errorf("EnvoyRoutedCodes has %d, which Envoy's filter does not dispatch", c)
		}
	}
	unused := map[int32]bool{} // codes rocketpilot's routes name that never reach Envoy's routing
	for _, codes := range [][]int32{SendCodes, ConsumeCodes, AckCodes, PullCodes} {
		for _, c := range codes {
			if !slices.Contains(EnvoyRoutedCodes, c) {
				unused[c] = true
			}
		}
	}
	listed := map[int32]bool{}
	for _, row := range docTable(t, doc, "route-codes-envoy-never-dispatches") {
		c := code(row)
		switch {
		case !unused[c]:
			t.Errorf("%s lists %d as a route entry Envoy never uses, but it is not one: either Envoy routes it or no route matches it", doc, c)
		case len(row) < 2 || row[len(row)-1] == "" || strings.HasPrefix(strings.ToLower(row[len(row)-1]), "no client"):
			t.Errorf("%s lists %d without naming the client of rocketpilot that uses its route entry (%q): an entry no "+
				"client uses does not belong in the route tables", doc, c, row[len(row)-1])
		}
		listed[c] = true
	}
	for c := range unused {
		if !listed[c] {
			t.Errorf("rocketpilot's routes match code %d, which Envoy's filter never routes, and %s does not say what uses it", c, doc)
		}
	}
}

package dashboard

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rocketpilot/rocketpilot/dataplane"
	"github.com/rocketpilot/rocketpilot/internal/sidecaradmin"
)

// TestSidecarPage renders a sidecar's status as its page: every field the template names exists on
// sidecaradmin.Sidecar (the page takes it as any), and the values show.
func TestSidecarPage(t *testing.T) {
	st := sidecaradmin.Sidecar{Node: "orders-7", XDSServer: "cp:18000", Ready: true, Connected: true, Routes: 3,
		Listen: "127.0.0.1:9876", Groups: []sidecaradmin.Group{{Name: "broker-a", Address: "127.0.0.1:40001"}},
		Pop: []dataplane.PopStats{{Group: "g1", Popped: 10, Acked: 9, InFlight: 1}}, Version: "v9"}
	h := NewSidecar(func() any { return st }, 0).Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /: %d %s", w.Code, w.Body)
	}
	mustContain(t, "the sidecar's page", w.Body.String(), `id="sidecar-node">orders-7<`, `id="sidecar-ready">ready<`,
		`id="sidecar-routes">3<`, "127.0.0.1:40001", "<td>g1</td><td>10</td>", "rocketpilot v9", `href="/api/v1/sidecar"`)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/elsewhere", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("GET /elsewhere: %d, want 404", w.Code)
	}
}

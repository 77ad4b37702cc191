package translate

import (
	"os"
	"regexp"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3" // the bootstraps' typed configs
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// TestDocumentedBootstraps parses every Envoy bootstrap of the docs (a YAML block starting with node:) as Envoy's
// Bootstrap, strictly (an unknown or misspelt field fails), and validates it with the generated rules.
func TestDocumentedBootstraps(t *testing.T) {
	block := regexp.MustCompile("(?s)```yaml\n(node:.*?)```")
	found := 0
	for _, doc := range []string{"../../docs/xds.md", "../../docs/operations.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllSubmatch(b, -1) {
			found++
			text := string(m[1])
			js, err := yaml.YAMLToJSON(m[1])
			if err != nil {
				t.Fatalf("%s: a bootstrap that is not YAML: %v\n%s", doc, err, text)
			}
			var bs bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(js, &bs); err != nil {
				t.Fatalf("%s: not an Envoy bootstrap: %v\n%s", doc, err, text)
			}
			if err := bs.ValidateAll(); err != nil {
				t.Fatalf("%s: invalid bootstrap: %v\n%s", doc, err, text)
			}
			ads := bs.GetDynamicResources().GetAdsConfig()
			if ads.GetApiType().String() != "DELTA_GRPC" || bs.GetDynamicResources().GetLdsConfig().GetAds() == nil ||
				bs.GetDynamicResources().GetCdsConfig().GetAds() == nil || !strings.Contains(text, "port_value: 18000") {
				t.Errorf("%s: the bootstrap does not take LDS and CDS by delta ADS from rocketpilot's port:\n%s", doc, text)
			}
		}
	}
	if found < 2 {
		t.Fatalf("found %d bootstraps in the docs, want the one of xds.md and the one of operations.md", found)
	}
}

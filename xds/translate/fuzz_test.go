package translate

import (
	"testing"

	"google.golang.org/protobuf/proto"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// FuzzExtensionConfigFromRoutes feeds ExtensionConfigFromRoutes arbitrary bytes as encoded route configurations
// (split in two at the fuzzer's choice): it parses them, so it must return an error or a config that decodes,
// never panic.
func FuzzExtensionConfigFromRoutes(f *testing.F) {
	_, topics := model(f)
	for _, tp := range topics {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(TopicRoute(tp))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(len(b)/2))
	}
	f.Add([]byte{0x0a, 0xff}, uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		at := int(cut) % (len(b) + 1)
		out, err := ExtensionConfigFromRoutes(ProxyOptions{StatPrefix: "rocketmq"}, [][]byte{b[:at], b[at:]})
		if err != nil {
			return
		}
		var ext corev3.TypedExtensionConfig
		if err := proto.Unmarshal(out, &ext); err != nil {
			t.Fatalf("the config does not decode: %v", err)
		}
		if ext.GetName() != ExtensionConfigName || ext.GetTypedConfig().GetTypeUrl() != ProxyType {
			t.Fatalf("config %q of type %q", ext.GetName(), ext.GetTypedConfig().GetTypeUrl())
		}
	})
}

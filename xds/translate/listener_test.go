package translate

import (
	"testing"
	"time"

	rmqv3 "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/rocketmq_proxy/v3"
)

// TestProxyConfigTransientObjectLifeSpan: the filter config carries the configured transient_object_life_span, and
// Envoy's own default, 30 s, when none is configured (the golden files hold that default). The spliced ECDS config
// carries it too (TestExtensionConfigFromRoutesMatchesTranslation).
func TestProxyConfigTransientObjectLifeSpan(t *testing.T) {
	_, topics := model(t)
	routes := []*rmqv3.RouteConfiguration{TopicRoute(topics[0])}
	for span, want := range map[time.Duration]time.Duration{0: 30 * time.Second, 2 * time.Minute: 2 * time.Minute} {
		if got := ProxyConfig(ProxyOptions{StatPrefix: "rocketmq", TransientObjectLifeSpan: span}, routes).GetTransientObjectLifeSpan().AsDuration(); got != want {
			t.Errorf("configured %v: the filter config's span is %v, want %v", span, got, want)
		}
	}
}

// TestCheckTransientObjectLifeSpan: a span of a second to 12 hours is accepted; zero, negative, sub-second and
// longer spans are not.
func TestCheckTransientObjectLifeSpan(t *testing.T) {
	for _, ok := range []time.Duration{time.Second, 30 * time.Second, 5 * time.Minute, 12 * time.Hour} {
		if err := CheckTransientObjectLifeSpan(ok); err != nil {
			t.Errorf("%v refused: %v", ok, err)
		}
	}
	for _, bad := range []time.Duration{0, -time.Second, 999 * time.Millisecond, 12*time.Hour + time.Millisecond, 1000 * time.Hour} {
		if err := CheckTransientObjectLifeSpan(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

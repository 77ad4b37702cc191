package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rocketpilot/rocketpilot/nameserver/watcher"
	"github.com/rocketpilot/rocketpilot/xds/server"
	"github.com/rocketpilot/rocketpilot/xds/translate"
)

// validate checks serve's flags, in one place, before anything starts: the combinations, and the values the parts
// they configure would otherwise refuse late or not at all. A bad value is an error naming its flag. It returns
// the NameServer addresses --namesrv names, trimmed and without repeats.
func (o *serveOptions) validate() ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(o.namesrv, ";") {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 && !o.demo && !o.kube.enabled && o.configDir == "" {
		return nil, errors.New("nothing to watch: give --namesrv, --demo, --kubernetes or --config")
	}
	if o.kube.enabled && o.configDir != "" {
		return nil, errors.New("--kubernetes and --config both define NameServerSources, TopicRoutes and TopicBindings: give one of them")
	}
	if m := watcher.Mode(o.discovery); m != watcher.ModeAllTopics && m != watcher.ModeInUse {
		return nil, fmt.Errorf("--discovery %q: want %q or %q", o.discovery, watcher.ModeAllTopics, watcher.ModeInUse)
	}
	if !slices.Contains(server.Compressions, o.compression) {
		return nil, fmt.Errorf("--xds-compression %q: want one of %s", o.compression, strings.Join(server.Compressions, ", "))
	}
	if o.streamRate <= 0 || o.streamBurst < 1 || o.admissionWait < 0 {
		return nil, fmt.Errorf("--xds-stream-rate %g, --xds-stream-burst %d, --xds-admission-wait %v: want a positive rate and burst and a wait of 0 or more", o.streamRate, o.streamBurst, o.admissionWait)
	}
	if o.maxSubs < 1 || o.nackBackoff <= 0 {
		return nil, fmt.Errorf("--xds-max-subscriptions %d, --nack-backoff %v: want positive values", o.maxSubs, o.nackBackoff)
	}
	if err := translate.CheckTransientObjectLifeSpan(o.lifeSpan); err != nil {
		return nil, fmt.Errorf("--transient-object-life-span: %w", err)
	}
	if o.tlsReload <= 0 {
		return nil, fmt.Errorf("--tls-reload-interval %v: want a positive duration", o.tlsReload)
	}
	if o.tls.ClientCA != "" && o.tls.Cert == "" {
		return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")
	}
	return addrs, nil
}

// Package controllers turns rocketpilot's custom resources into the routing model: NameServerSources become
// NameServer watchers (Sources), TopicRoutes become policies and TopicBindings the scopes of proxies (Policies).
//
// The kinds come from a Kubernetes API server, through controller-runtime reconcilers that run on every replica
// (every replica serves xDS from its own model) while only the elected leader writes status and events; or from
// YAML files (FileSource), validated with the CRDs' own OpenAPI schemas and CEL rules. Both paths share the
// conversion in this package. It writes into routing and runs nameserver watchers; it never imports xds.
package controllers

// Package v1alpha1 is the rocketpilot.io/v1alpha1 API: NameServerSource (where topic routes come from),
// TopicRoute (routing policy for matched topics) and TopicBinding (which workloads use which topics).
//
// The CRD manifests in crds/manifests are generated from these types by controller-gen (make generate); the
// OpenAPI schema and the CEL rules (x-kubernetes-validations) in the markers below are the validation both the
// API server and the standalone file source apply.
//
// +kubebuilder:object:generate=true
// +groupName=rocketpilot.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API's group and version.
	GroupVersion = schema.GroupVersion{Group: "rocketpilot.io", Version: "v1alpha1"}
	// SchemeBuilder registers the API's types.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
	// AddToScheme adds the API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Condition types and reasons the controllers write.
const (
	// ConditionReady: a NameServerSource's watcher has synced and at least one NameServer answers.
	ConditionReady = "Ready"
	// ConditionDegraded: something is wrong but the last good routes are served (a NameServer unreachable, a
	// NameService without addresses).
	ConditionDegraded = "Degraded"
	// ConditionAccepted: a TopicRoute or TopicBinding is valid and applied.
	ConditionAccepted = "Accepted"
	// ConditionResolved: every backend of a TopicRoute names a broker cluster or broker group the NameServers know.
	ConditionResolved = "Resolved"
	// ConditionConflicted: an older TopicRoute claims some of this one's topics, which follow the older one.
	ConditionConflicted = "Conflicted"
	// ConditionRejected: a node this replica serves rejected (NACKed) xDS configuration that carries some of this
	// TopicRoute's topics; it keeps its last good configuration.
	ConditionRejected = "Rejected"

	ReasonSynced           = "Synced"
	ReasonSyncing          = "Syncing"
	ReasonUnreachable      = "NameServerUnreachable"
	ReasonNoAddresses      = "NoAddresses"
	ReasonNameServiceError = "NameServiceNotFound"
	ReasonHealthy          = "Healthy"
	ReasonAccepted         = "Accepted"
	ReasonInvalid          = "Invalid"
	ReasonResolved         = "Resolved"
	ReasonBackendNotFound  = "BackendNotFound"
	ReasonNoConflict       = "NoConflict"
	ReasonOverridden       = "Overridden"
	ReasonNacked           = "Nacked"
	ReasonNoRejection      = "NoRejection"
)

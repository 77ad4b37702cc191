package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DiscoveryMode says which topics a NameServerSource follows.
// +kubebuilder:validation:Enum=AllTopics;TopicsInUse
type DiscoveryMode string

const (
	// DiscoveryAllTopics follows every topic the NameServers list.
	DiscoveryAllTopics DiscoveryMode = "AllTopics"
	// DiscoveryTopicsInUse follows only the topics some sidecar uses, so NameServer load follows use.
	DiscoveryTopicsInUse DiscoveryMode = "TopicsInUse"
)

// NameServerSource is a set of RocketMQ NameServers whose topic routes rocketpilot learns and serves.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=nss,categories=rocketmq
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Topics",type=integer,JSONPath=`.status.topics`
// +kubebuilder:printcolumn:name="Brokers",type=integer,JSONPath=`.status.brokers`
// +kubebuilder:printcolumn:name="Last Sync",type=date,JSONPath=`.status.lastSyncTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NameServerSource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   NameServerSourceSpec   `json:"spec"`
	Status NameServerSourceStatus `json:"status,omitempty"`
}

// NameServerSourceSpec says where the NameServers are and how to poll them.
//
// +kubebuilder:validation:XValidation:rule="has(self.addresses) != has(self.nameServiceRef)",message="give exactly one of addresses and nameServiceRef"
type NameServerSourceSpec struct {
	// Addresses of the NameServers, host:port. NameServers do not share state: rocketpilot merges their views.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:items:Pattern=`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):[0-9]{1,5}$`
	Addresses []string `json:"addresses,omitempty"`

	// NameServiceRef names a rocketmq-operator NameService (rocketmq.apache.org) whose status.nameServers are
	// the NameServers, on port 9876.
	// +optional
	NameServiceRef *NameServiceReference `json:"nameServiceRef,omitempty"`

	// PollInterval is how often each topic route and the topic list are polled, as RocketMQ clients do (30s).
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="pollInterval must be between 1s and 1h"
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`

	// Discovery says which topics are followed: AllTopics (every listed topic) or TopicsInUse (only topics some
	// sidecar asked for).
	// +optional
	// +kubebuilder:default=AllTopics
	Discovery DiscoveryMode `json:"discovery,omitempty"`

	// FrameLimit is the largest NameServer frame accepted, in bytes (64 MiB). Large deployments exceed Java's
	// 16 MiB default.
	// +optional
	// +kubebuilder:default=67108864
	// +kubebuilder:validation:Minimum=1048576
	// +kubebuilder:validation:Maximum=1073741824
	FrameLimit int64 `json:"frameLimit,omitempty"`

	// Topics are followed when the NameServers list none (topic listing disabled).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MaxLength=127
	// +kubebuilder:validation:items:Pattern=`^[%|a-zA-Z0-9_-]+$`
	Topics []string `json:"topics,omitempty"`
}

// NameServiceReference names a rocketmq-operator NameService.
type NameServiceReference struct {
	// Name of the NameService.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the NameService; the NameServerSource's own when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// NameServerSourceStatus is what the watcher of the source reports.
type NameServerSourceStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Topics followed.
	// +optional
	Topics int32 `json:"topics"`
	// Brokers is the number of broker groups the NameServers know.
	// +optional
	Brokers int32 `json:"brokers"`
	// NameServers: per address, whether it answers.
	// +optional
	// +listType=map
	// +listMapKey=address
	NameServers []NameServerStatus `json:"nameServers,omitempty"`
	// LastSyncTime is when the broker tables and topic lists were last polled.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
}

// NameServerStatus is one NameServer's reachability.
type NameServerStatus struct {
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	// +optional
	LastError string `json:"lastError,omitempty"`
	// +optional
	LastSuccessTime *metav1.Time `json:"lastSuccessTime,omitempty"`
}

// NameServerSourceList is a list of NameServerSources.
//
// +kubebuilder:object:root=true
type NameServerSourceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NameServerSource `json:"items"`
}

func init() {
	SchemeBuilder.Register(&NameServerSource{}, &NameServerSourceList{})
}

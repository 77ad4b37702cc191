package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TopicRoute is routing policy for the topics it matches: where producers send (with weights, for migrating a
// topic between broker clusters), where consumers read, what a route query lists, which brokers are drained,
// whether the topic is ordered, and which consumer groups Go sidecars put in Pop mode. A topic follows at most one
// TopicRoute: when several match, the oldest wins (then the lowest namespace/name) and the others report
// Conflicted.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tr,categories=rocketmq
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Resolved",type=string,JSONPath=`.status.conditions[?(@.type=="Resolved")].status`
// +kubebuilder:printcolumn:name="Topics",type=integer,JSONPath=`.status.matchedTopics`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TopicRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TopicRouteSpec   `json:"spec"`
	Status TopicRouteStatus `json:"status,omitempty"`
}

// TopicRouteSpec is the policy. Every rule is optional; without rules a matched topic is served as the
// NameServers report it.
//
// +kubebuilder:validation:XValidation:rule="!has(self.consume) || self.consume.backends.all(b, !has(b.weight))",message="weights apply to send only: consume backends take no weight"
// +kubebuilder:validation:XValidation:rule="!has(self.routeQuery) || self.routeQuery.backends.all(b, !has(b.weight))",message="weights apply to send only: routeQuery backends take no weight"
// +kubebuilder:validation:XValidation:rule="!has(self.ack) || self.ack.backends.all(b, !has(b.weight))",message="weights apply to send only: ack backends take no weight"
// +kubebuilder:validation:XValidation:rule="!has(self.ordered) || !self.ordered || (!has(self.drain) && (!has(self.send) || self.send.backends.all(b, !has(b.weight))))",message="an ordered topic keeps a stable broker/queue mapping: it takes no send weights and no drain"
type TopicRouteSpec struct {
	// Topics the policy applies to.
	Topics TopicSelector `json:"topics"`

	// Send restricts the broker groups producers send to and weighs them (SEND_MESSAGE, SEND_MESSAGE_V2,
	// SEND_BATCH_MESSAGE). Groups the backends do not name are served read-only.
	// +optional
	Send *SendRule `json:"send,omitempty"`

	// Consume restricts the broker groups consumers read from (PULL, POP, PEEK, NOTIFICATION). Groups the
	// backends do not name are served write-only. Acks always go back to the broker that popped, so pops made
	// before a group left consume are still acknowledged.
	// +optional
	Consume *BackendRule `json:"consume,omitempty"`

	// Ack names broker groups that take acks even when their queues are not readable, at the NameServers or under
	// this policy: acks (and invisible-time changes) of messages popped before a group stopped being readable
	// still reach it. An ack always goes back to the broker that popped; without this rule, to every group whose
	// queues the NameServers report readable.
	// +optional
	Ack *BackendRule `json:"ack,omitempty"`

	// RouteQuery restricts the broker groups a topic's route lists at all (the route query answer, 105, and
	// every operation). A topic the backends leave no group is served as the NameServers report it.
	// +optional
	RouteQuery *BackendRule `json:"routeQuery,omitempty"`

	// Drain makes brokers read-only for the matched topics: producers stop sending there, consumers read on.
	// +optional
	Drain *Drain `json:"drain,omitempty"`

	// Ordered topics keep a stable broker/queue mapping: a broker group that disappears from the NameServers
	// stays in the served route (sends to it fail until it is back) instead of shifting every key to other
	// queues.
	// +optional
	Ordered bool `json:"ordered,omitempty"`

	// Pop puts consumer groups in Pop mode for the matched topics: Go sidecars (`rocketpilot sidecar`) turn these
	// groups' pulls (PULL_MESSAGE, 11) into POP_MESSAGE, so the broker, not the clients' rebalance, hands out the
	// messages: every member of the group then gets every queue of the topic, and a message a member does not ack
	// within the invisible time is handed out again. A group should be in Pop mode for every topic it consumes,
	// so that all its members consume every topic the same way. Envoy's RocketMQ filter ignores the rule (it
	// routes no pull).
	// +optional
	Pop *PopRule `json:"pop,omitempty"`
}

// PopRule names the consumer groups in Pop mode and how long a popped message stays invisible.
type PopRule struct {
	// ConsumerGroups in Pop mode (RocketMQ group names).
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:Pattern=`^[%|a-zA-Z0-9_-]+$`
	ConsumerGroups []string `json:"consumerGroups"`

	// InvisibleTime is how long a popped message stays invisible to the group before the broker hands it out
	// again when it was not acked (60s).
	// +optional
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('12h')",message="invisibleTime must be between 1s and 12h"
	InvisibleTime *metav1.Duration `json:"invisibleTime,omitempty"`
}

// TopicSelector matches topics by exact name, prefix or regular expression (RE2, whole name); a topic matches
// when any of them does.
//
// +kubebuilder:validation:XValidation:rule="has(self.exact) || has(self.prefix) || has(self.regex)",message="topics must give at least one of exact, prefix and regex"
type TopicSelector struct {
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=127
	// +kubebuilder:validation:items:Pattern=`^[%|a-zA-Z0-9_-]+$`
	Exact []string `json:"exact,omitempty"`
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=127
	// +kubebuilder:validation:items:Pattern=`^[%|a-zA-Z0-9_-]+$`
	Prefix []string `json:"prefix,omitempty"`
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Regex string `json:"regex,omitempty"`
}

// SendRule names the groups producers send to.
//
// +kubebuilder:validation:XValidation:rule="self.backends.all(b, has(b.weight)) || self.backends.all(b, !has(b.weight))",message="give every send backend a weight, or none"
// +kubebuilder:validation:XValidation:rule="!self.backends.all(b, has(b.weight)) || self.backends.exists(b, b.weight > 0)",message="send weights must not all be 0"
type SendRule struct {
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Backends []Backend `json:"backends"`
}

// BackendRule names broker groups.
type BackendRule struct {
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Backends []Backend `json:"backends"`
}

// Backend is a broker cluster (every group in it) or a list of broker groups.
//
// +kubebuilder:validation:XValidation:rule="has(self.brokerCluster) != has(self.brokerNames)",message="a backend names either a brokerCluster or brokerNames"
type Backend struct {
	// BrokerCluster names every broker group of a broker cluster.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	BrokerCluster string `json:"brokerCluster,omitempty"`
	// BrokerNames names broker groups.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	BrokerNames []string `json:"brokerNames,omitempty"`
	// Weight is this backend's share of sends, relative to the other backends' (send only). A backend's weight
	// is split evenly over its writable groups.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	Weight *int32 `json:"weight,omitempty"`
}

// Drain names brokers to make read-only.
type Drain struct {
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	BrokerNames []string `json:"brokerNames"`
}

// TopicRouteStatus reports whether the policy is applied and to how many topics.
type TopicRouteStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted, Resolved, Conflicted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// MatchedTopics is the number of topics that follow this policy.
	// +optional
	MatchedTopics int32 `json:"matchedTopics"`
}

// TopicRouteList is a list of TopicRoutes.
//
// +kubebuilder:object:root=true
type TopicRouteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TopicRoute `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TopicRoute{}, &TopicRouteList{})
}

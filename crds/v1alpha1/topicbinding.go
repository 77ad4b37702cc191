package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TopicBinding says which workloads use which topics and consumer groups. It is the scope of Envoy sidecars: a
// bound node's RocketMQ route table (ECDS) holds exactly its bound topics.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tb,categories=rocketmq
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Proxies",type=integer,JSONPath=`.status.boundProxies`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TopicBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TopicBindingSpec   `json:"spec"`
	Status TopicBindingStatus `json:"status,omitempty"`
}

// TopicBindingSpec selects workloads and names what they use.
//
// +kubebuilder:validation:XValidation:rule="has(self.podSelector) != has(self.nodeIDs)",message="select workloads by podSelector or by nodeIDs, not both"
// +kubebuilder:validation:XValidation:rule="has(self.topics) || has(self.consumerGroups)",message="bind at least one topic or consumer group"
type TopicBindingSpec struct {
	// PodSelector selects the pods of the binding's namespace (matched against the labels and namespace in the
	// sidecar's node metadata).
	// +optional
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="a podSelector operator is one of In, NotIn, Exists and DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, (e.operator == 'In' || e.operator == 'NotIn') == (has(e.values) && size(e.values) > 0))",message="In and NotIn take values; Exists and DoesNotExist take none"
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
	// NodeIDs are patterns of xDS node ids; '*' matches any run of characters.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	NodeIDs []string `json:"nodeIDs,omitempty"`
	// Topics the workloads produce to or consume from.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=127
	// +kubebuilder:validation:items:Pattern=`^[%|a-zA-Z0-9_-]+$`
	Topics []string `json:"topics,omitempty"`
	// ConsumerGroups the workloads consume as; each binds its retry topic (%RETRY%group).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=255
	// +kubebuilder:validation:items:Pattern=`^[%|a-zA-Z0-9_-]+$`
	ConsumerGroups []string `json:"consumerGroups,omitempty"`
	// Strict makes the bindings an access boundary for the nodes this one selects: they may subscribe only to the
	// topics their bindings grant; another topic they ask for is answered as not found and never served. Their
	// node metadata's topics grant nothing. (`rocketpilot serve --xds-strict-scope` does this for every node.)
	// +optional
	Strict bool `json:"strict,omitempty"`
}

// TopicBindingStatus reports the binding.
type TopicBindingStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Accepted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// BoundProxies is the number of connected xDS nodes the binding selects.
	// +optional
	BoundProxies int32 `json:"boundProxies"`
}

// TopicBindingList is a list of TopicBindings.
//
// +kubebuilder:object:root=true
type TopicBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TopicBinding `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TopicBinding{}, &TopicBindingList{})
}

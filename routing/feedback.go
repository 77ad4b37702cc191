package routing

// Rejection is served configuration a node refused (an xDS NACK) and has not accepted a later version of. It
// flows back from the xDS side so that the policies whose topics it carries can say so in their status.
type Rejection struct {
	Node    string
	TypeURL string
	Version string
	Error   string
	// Topics are the topics the rejected response carried: its routes, or every topic of the node's scope for a
	// config that holds them all.
	Topics []string
}

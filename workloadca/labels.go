package workloadca

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// labelsURN starts the URI SAN in which a certificate for a pod carries the pod's labels, as the Kubernetes API
// had them when the certificate was issued: urn:rocketpilot:pod-labels:KEY=VALUE&… (URL query encoding, keys
// sorted). TopicBindings select pods by labels, and a pod's sidecar claims them in its node metadata; the identity
// check holds the claim to these.
const labelsURN = "rocketpilot:pod-labels:"

// LabelsURI is the URI SAN carrying labels.
func LabelsURI(labels map[string]string) *url.URL {
	q := url.Values{}
	for k, v := range labels {
		q.Set(k, v)
	}
	return &url.URL{Scheme: "urn", Opaque: labelsURN + q.Encode()}
}

// CertifiedLabels returns the pod labels a certificate carries, and whether it carries any (a certificate for a
// pod carries them even when the pod has none).
func CertifiedLabels(cert *x509.Certificate) (map[string]string, bool, error) {
	for _, u := range cert.URIs {
		rest, ok := strings.CutPrefix(u.Opaque, labelsURN)
		if u.Scheme != "urn" || !ok {
			continue
		}
		q, err := url.ParseQuery(rest)
		if err != nil {
			return nil, true, fmt.Errorf("the certificate's pod labels %q: %w", u.String(), err)
		}
		labels := make(map[string]string, len(q))
		for k, vs := range q {
			if len(vs) != 1 {
				return nil, true, fmt.Errorf("the certificate's pod labels %q: label %s given %d times", u.String(), k, len(vs))
			}
			labels[k] = vs[0]
		}
		return labels, true, nil
	}
	return nil, false, nil
}

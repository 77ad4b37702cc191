package workloadca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/rocketpilot/rocketpilot/internal/certtest"
	"github.com/rocketpilot/rocketpilot/internal/kubetest"
	"github.com/rocketpilot/rocketpilot/internal/promtest"
)

// authority serves an Authority over TLS with a test CA, reviewing tokens with the real API server of cs; it
// returns its URL, the TLS configuration that trusts it, and the CA's pool.
func authority(t *testing.T, cs kubernetes.Interface, ttl time.Duration) (*Authority, string, *tls.Config, *x509.CertPool) {
	t.Helper()
	ca := certtest.NewCA(t, "rocketpilot-ca")
	files := certtest.Write(t, t.TempDir(), "ca.crt", ca.PEM, "ca.key", ca.KeyPEM(t))
	a, err := Load(files[0], files[1], TokenReviewer{Client: cs}, Options{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.Handler())
	pair := ca.Server(t, "rocketpilot")
	cert, err := tls.X509KeyPair(pair.Cert, pair.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	return a, srv.URL, &tls.Config{RootCAs: pool, ServerName: "localhost"}, pool
}

// token makes a token of a service account for audiences, through the API server, in a file.
func token(t *testing.T, cs kubernetes.Interface, namespace, name, audience string) string {
	t.Helper()
	return writeFile(t, kubetest.Token(t, cs, namespace, name, audience, nil))
}

// With a real kube-apiserver reviewing the tokens: a service account's token of audience rocketpilot gets a
// certificate naming spiffe://cluster.local/ns/NS/sa/SA, signed by the CA, for client authentication only; a token
// of another audience, a made-up token and no token are refused, and counted. Run renews the certificate at two
// thirds of its life, with a new key, and keeps it when a renewal fails.
func TestAuthorityWithTokenReview(t *testing.T) {
	env := kubetest.StartT(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubetest.ServiceAccount(t, cs, "team-a", "orders")
	a, url, caTLS, pool := authority(t, cs, 3*time.Second)

	src := NewSource(url, token(t, cs, "team-a", "orders", Audience), caTLS, nil)
	if _, err := src.GetClientCertificate(nil); err == nil {
		t.Fatal("a certificate before the first fetch")
	}
	if err := src.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	leaf := src.Current().Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/team-a/sa/orders" || len(leaf.DNSNames) != 0 {
		t.Fatalf("names %v %v", leaf.URIs, leaf.DNSNames)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the certificate does not verify as a client's: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("a workload certificate verifies as a server's")
	}
	if life := leaf.NotAfter.Sub(time.Now()); life > 3*time.Second || life < time.Second {
		t.Fatalf("valid for %v more, want the 3s TTL", life)
	}

	// A token bound to a pod, as a projected one is: the certificate names that pod's node and no other.
	pod, err := cs.CoreV1().Pods("team-a").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orders-1",
		Labels: map[string]string{"app": "orders", "app.kubernetes.io/part-of": "shop"}},
		Spec: corev1.PodSpec{ServiceAccountName: "orders", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podSrc := NewSource(url, writeFile(t, kubetest.Token(t, cs, "team-a", "orders", Audience, pod)), caTLS, nil)
	if err := podSrc.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if uris := podSrc.Current().Leaf.URIs; len(uris) != 2 || uris[0].String() != "spiffe://cluster.local/ns/team-a/node/orders-1.team-a" {
		t.Fatalf("a pod-bound token's certificate names %v", uris)
	}
	if labels, ok, err := CertifiedLabels(podSrc.Current().Leaf); !ok || err != nil || !maps.Equal(labels, pod.Labels) {
		t.Fatalf("the certificate carries the labels %v (%v, %v), the pod has %v", labels, ok, err, pod.Labels)
	}
	// A pod of the same name made again: the token bound to the first is refused.
	if err := cs.CoreV1().Pods("team-a").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("team-a").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orders-1"},
		Spec: corev1.PodSpec{ServiceAccountName: "orders", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := podSrc.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a token of a pod that is gone: %v, want 401", err)
	}

	// Of a CSR only the key is used: names it asks for (an operator's common name, DNS names) are not given.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "operator"},
		DNSNames: []string{"operator", "rocketctl"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	chain, err := a.Sign(csr, Identity{Namespace: "team-a", ServiceAccount: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(chain)
	signed, _ := x509.ParseCertificate(block.Bytes)
	if signed.Subject.CommonName != "" || len(signed.DNSNames) != 0 || len(signed.URIs) != 1 {
		t.Fatalf("the CSR's names were signed: %q %v %v", signed.Subject.CommonName, signed.DNSNames, signed.URIs)
	}

	for name, file := range map[string]string{
		"the API server's audience": token(t, cs, "team-a", "orders", ""),
		"a made-up token":           writeFile(t, "not-a-token"),
		"no token":                  writeFile(t, ""),
	} {
		err := NewSource(url, file, caTLS, nil).Fetch(ctx)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Errorf("%s: %v, want 401", name, err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a)
	fams := promtest.Families(t, reg)
	if got := promtest.Sum(fams, "rocketpilot_workload_certificates_total", map[string]string{"result": "refused"}); got != 4 {
		t.Errorf("%v refusals counted, want 4 (the gone pod's token and three)", got)
	}

	// Renewal at two thirds of 3 s: a new certificate and key, before the first expires.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { src.Run(runCtx, 50*time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for src.Fetches() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the certificate was not renewed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if time.Now().After(leaf.NotAfter) {
		t.Fatal("renewed only after the first certificate expired")
	}
	renewed := src.Current().Leaf
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || renewed.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
		t.Fatal("the renewal kept the certificate or its key")
	}
	stop()
	<-done
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

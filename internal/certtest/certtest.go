// Package certtest issues throwaway certificates for tests: a CA, server certificates for loopback, client
// certificates. Only tests import it.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority that signs test certificates.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte // the CA certificate
}

var serial atomic.Int64

// NewCA returns a new CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der := sign(t, tmpl, tmpl, key, key)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// KeyPEM is the CA's private key, in PEM: for a component that signs with the CA.
func (ca *CA) KeyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// template is a certificate for name, valid from an hour ago for a day, with the next serial number.
func template(name string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

// sign returns the DER of tmpl, for key's public half, signed by parent with parentKey.
func sign(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Pair is an issued certificate and its key, in PEM, with its serial number.
type Pair struct {
	Cert, Key []byte
	Serial    *big.Int
}

// Server issues a server certificate for localhost and 127.0.0.1.
func (ca *CA) Server(t testing.TB, name string) Pair {
	return ca.issue(t, name, x509.ExtKeyUsageServerAuth)
}

// Client issues a client certificate with common name name.
func (ca *CA) Client(t testing.TB, name string) Pair {
	return ca.issue(t, name, x509.ExtKeyUsageClientAuth)
}

// Workload issues a client certificate with common name name and the given subject alternative names: a name with
// a scheme (spiffe://…) is a URI, anything else a DNS name. Nothing else is named, localhost included.
func (ca *CA) Workload(t testing.TB, name string, sans ...string) Pair {
	t.Helper()
	return ca.issueWith(t, name, x509.ExtKeyUsageClientAuth, func(tmpl *x509.Certificate) {
		tmpl.DNSNames, tmpl.IPAddresses = nil, nil
		for _, san := range sans {
			if u, err := url.Parse(san); err == nil && u.Scheme != "" {
				tmpl.URIs = append(tmpl.URIs, u)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, san)
			}
		}
	})
}

func (ca *CA) issue(t testing.TB, name string, usage x509.ExtKeyUsage) Pair {
	return ca.issueWith(t, name, usage, func(*x509.Certificate) {})
}

func (ca *CA) issueWith(t testing.TB, name string, usage x509.ExtKeyUsage, edit func(*x509.Certificate)) Pair {
	t.Helper()
	key := newKey(t)
	tmpl := template(name)
	tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{usage}
	tmpl.DNSNames, tmpl.IPAddresses = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	edit(tmpl)
	der := sign(t, tmpl, ca.cert, key, ca.key)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), Serial: tmpl.SerialNumber}
}

// Write writes files into dir (name → content) and returns dir/name for each, in order.
func Write(t testing.TB, dir string, files ...any) []string {
	t.Helper()
	var out []string
	for i := 0; i+1 < len(files); i += 2 {
		path := filepath.Join(dir, files[i].(string))
		// Rename into place, as a Secret volume swaps its files: a reader never sees half a file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, files[i+1].([]byte), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		out = append(out, path)
	}
	return out
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

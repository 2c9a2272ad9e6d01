package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	certutil "k8s.io/client-go/util/cert"
)

// pkiFiles are the credentials of one environment.
type pkiFiles struct {
	// certDir is kube-apiserver's --cert-dir, where writePKI puts the
	// self-signed serving certificate (with its CA appended) servingCert
	// and its key servingKey, which the API server then uses.
	certDir     string
	servingCert string
	servingKey  string
	// servingCA is where writeServingCA puts the CA of servingCert alone.
	servingCA string
	// tokenFile is the --token-auth-file holding adminToken.
	tokenFile  string
	adminToken string
	// proxyToken is kube-proxy's token (KubeProxyUser).
	proxyToken string
	// nodeTokens are the tokens of the Nodes of Options.NodeNames, by name.
	nodeTokens map[string]string
	// saPrivateKey signs ServiceAccount tokens; saPublicKey verifies them.
	saPrivateKey string
	saPublicKey  string
}

// writePKI creates the token file (the admin's and one per name in
// nodeNames) and the ServiceAccount key pair in dir.
func writePKI(dir string, nodeNames []string) (pkiFiles, error) {
	certDir := filepath.Join(dir, "pki")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return pkiFiles{}, fmt.Errorf("create certificate directory: %w", err)
	}
	f := pkiFiles{
		certDir: certDir,
		// k8s.io/apiserver's SecureServingOptions: <cert-dir>/<PairName>.crt
		// with PairName "apiserver".
		servingCert:  filepath.Join(certDir, "apiserver.crt"),
		servingKey:   filepath.Join(certDir, "apiserver.key"),
		servingCA:    filepath.Join(certDir, "ca.crt"),
		tokenFile:    filepath.Join(dir, "tokens.csv"),
		saPrivateKey: filepath.Join(dir, "sa.key"),
		saPublicKey:  filepath.Join(dir, "sa.pub"),
	}

	token, err := randomToken()
	if err != nil {
		return pkiFiles{}, err
	}
	f.adminToken = token
	// token,user,uid,"group1,group2"
	lines := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", token, AdminUser, AdminUser)
	// kube-proxy's user, which the API server's bootstrap policy binds to
	// the system:node-proxier ClusterRole.
	if f.proxyToken, err = randomToken(); err != nil {
		return pkiFiles{}, err
	}
	lines += fmt.Sprintf("%s,%s,%s,\"\"\n", f.proxyToken, KubeProxyUser, KubeProxyUser)
	f.nodeTokens = map[string]string{}
	for _, name := range nodeNames {
		if name == "" || strings.ContainsAny(name, ",\"\n") {
			return pkiFiles{}, fmt.Errorf("node name %q", name)
		}
		if f.nodeTokens[name], err = randomToken(); err != nil {
			return pkiFiles{}, err
		}
		user := NodeUser(name)
		lines += fmt.Sprintf("%s,%s,%s,\"%s\"\n", f.nodeTokens[name], user, user, NodesGroup)
	}
	if err := os.WriteFile(f.tokenFile, []byte(lines), 0o600); err != nil {
		return pkiFiles{}, fmt.Errorf("write token file: %w", err)
	}

	// The certificate kube-apiserver would generate itself, plus localhost:
	// clients on a node reach it through a KubePrism-style proxy at
	// localhost:7445, as on Talos, whose API server certificates name
	// localhost too.
	cert, certKey, err := certutil.GenerateSelfSignedCertKey("127.0.0.1",
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP("10.96.0.1"), net.ParseIP("fd00:10:96::1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return pkiFiles{}, fmt.Errorf("generate serving certificate: %w", err)
	}
	if err := os.WriteFile(f.servingKey, certKey, 0o600); err != nil {
		return pkiFiles{}, fmt.Errorf("write serving key: %w", err)
	}
	if err := os.WriteFile(f.servingCert, cert, 0o644); err != nil {
		return pkiFiles{}, fmt.Errorf("write serving certificate: %w", err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("generate serviceaccount key: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(f.saPrivateKey, priv, 0o600); err != nil {
		return pkiFiles{}, fmt.Errorf("write serviceaccount key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return pkiFiles{}, fmt.Errorf("encode serviceaccount public key: %w", err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := os.WriteFile(f.saPublicKey, pub, 0o644); err != nil {
		return pkiFiles{}, fmt.Errorf("write serviceaccount public key: %w", err)
	}
	return f, nil
}

// writeServingCA writes the CA certificates of the API server's serving
// certificate bundle (the self-signed CA that writePKI appended to the
// certificate) to f.servingCA. It is the --root-ca-file of the
// controller manager, which publishes it as the kube-root-ca.crt ConfigMap
// that in-cluster clients trust.
func (f pkiFiles) writeServingCA() error {
	bundle, err := os.ReadFile(f.servingCert)
	if err != nil {
		return fmt.Errorf("read serving certificate: %w", err)
	}
	var cas bytes.Buffer
	for rest := bundle; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("parse serving certificate %s: %w", f.servingCert, err)
		}
		if cert.IsCA {
			if err := pem.Encode(&cas, block); err != nil {
				return fmt.Errorf("encode serving CA: %w", err)
			}
		}
	}
	if cas.Len() == 0 {
		return fmt.Errorf("no CA certificate in %s", f.servingCert)
	}
	if err := os.WriteFile(f.servingCA, cas.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write serving CA: %w", err)
	}
	return nil
}

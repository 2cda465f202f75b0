package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/phoenix-ops/phoenix/controller/config"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the
// given serial, and its key.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "phoenix"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A reload renews the certificate for the next handshake, rotates the
// webhook secrets, and changes nothing when one file cannot be read.
func TestDaemonKeysReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	oldKey, newKey := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	writeCert(t, certFile, keyFile, 1)
	for f, s := range map[string]string{oldKey: strings.Repeat("o", 32), newKey: strings.Repeat("n", 32)} {
		if err := os.WriteFile(f, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &config.Config{Path: "phoenix.yaml", Controller: config.Controller{Listen: "127.0.0.1:0", TLSCertFile: certFile, TLSKeyFile: keyFile, WebhookSecretFile: oldKey}}
	keys := &daemonKeys{}
	if err := keys.load(cfg, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	ls, err := startListeners(cfg, cfg.Controller.Listen, "", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer ls.shutdown()
	serial := func() int64 {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} //nolint:gosec // the test's own self-signed certificate
		resp, err := c.Get("https://" + ls.mainL.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serving certificate %d, want 1", got)
	}

	// Rotation: the new secret, the old one beside it, a new certificate.
	writeCert(t, certFile, keyFile, 2)
	next := *cfg
	next.Controller.WebhookSecretFile, next.Controller.PreviousWebhookSecretFile = newKey, oldKey
	if err := keys.load(&next, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 2 {
		t.Errorf("after the reload serving certificate %d, want 2", got)
	}
	if string(keys.secret()) != strings.Repeat("n", 32) || string(keys.previous()) != strings.Repeat("o", 32) {
		t.Errorf("secrets %q, %q after the rotation", keys.secret(), keys.previous())
	}

	// A broken key refuses the whole reload: the secrets stay too.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := next
	broken.Controller.PreviousWebhookSecretFile = ""
	err = keys.load(&broken, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "phoenix.yaml: controller.tls_cert_file "+certFile+" and tls_key_file "+keyFile) {
		t.Fatalf("load with a broken key: %v", err)
	}
	if got := serial(); got != 2 {
		t.Errorf("after a refused reload serving certificate %d, want 2", got)
	}
	if keys.previous() == nil {
		t.Errorf("a refused reload dropped the previous secret")
	}

	// A short secret names the file and the field.
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Controller.TLSCertFile, cfg.Controller.TLSKeyFile, cfg.Controller.WebhookSecretFile = "", "", short
	if err := keys.load(cfg, zap.NewNop()); err == nil || !strings.HasPrefix(err.Error(), "phoenix.yaml: controller.webhook_secret_file: webhook secret "+short+": 3 bytes") {
		t.Errorf("short secret: %v", err)
	}
}

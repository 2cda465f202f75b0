package trigger

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

var (
	testSecret = []byte("s3cr3t-webhook-key-0123456789abcdef")
	testNow    = time.Date(2026, 5, 14, 10, 0, 0, 0, time.UTC)
)

func TestSignVerifyRoundTrip(t *testing.T) {
	body := []byte(`{"id":"e1","type":"image.published"}`)
	for _, skew := range []time.Duration{0, -5 * time.Minute, 5 * time.Minute, 299 * time.Second} {
		ts, sig := Sign(testSecret, testNow.Add(skew), body)
		if err := Verify(testSecret, testNow, 5*time.Minute, ts, sig, body); err != nil {
			t.Errorf("skew %s: %v", skew, err)
		}
	}
	ts, sig := Sign(testSecret, testNow, body)
	if ts != "1778752800" {
		t.Errorf("timestamp %q, want decimal Unix seconds 1778752800", ts)
	}
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Errorf("signature %q, want sha256= and 64 hex digits", sig)
	}
}

// TestSignKnownAnswer pins the construction: HMAC-SHA256 of
// "<timestamp>.<body>" (the value is what openssl dgst -sha256 -hmac key
// prints for 1778752800.{"a":1}).
func TestSignKnownAnswer(t *testing.T) {
	ts, sig := Sign([]byte("key"), time.Unix(1778752800, 0), []byte(`{"a":1}`))
	const want = "sha256=5cdefcba607e3e3ca8ea1c65b897cd2bae515941830d6d4baa7ded7c281cdbc1"
	if ts != "1778752800" || sig != want {
		t.Fatalf("Sign = %s, %s; want 1778752800, %s", ts, sig, want)
	}
}

// TestSignMatchesOpenSSL checks the shell recipe in examples/events/README.md.
func TestSignMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	body := []byte(`{"id":"e1","type":"image.published"}`)
	ts, sig := Sign(testSecret, testNow, body)
	cmd := exec.Command("openssl", "dgst", "-sha256", "-hmac", string(testSecret))
	cmd.Stdin = bytes.NewReader([]byte(ts + "." + string(body)))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	if got := "sha256=" + fields[len(fields)-1]; got != sig {
		t.Fatalf("openssl says %s, Sign says %s", got, sig)
	}
}

func TestVerifyRefuses(t *testing.T) {
	body := []byte(`{"id":"e1","type":"image.published"}`)
	ts, sig := Sign(testSecret, testNow, body)
	otherTS, otherSig := Sign(testSecret, testNow.Add(time.Second), body)
	_, wrongKey := Sign([]byte("another secret"), testNow, body)
	tests := []struct {
		name    string
		secret  []byte
		now     time.Time
		ts, sig string
		body    []byte
		msg     string
	}{
		{"no secret", nil, testNow, ts, sig, body, "no secret configured"},
		{"missing timestamp", testSecret, testNow, "", sig, body, "missing X-Phoenix-Timestamp"},
		{"missing signature", testSecret, testNow, ts, "", body, "missing X-Phoenix-Signature"},
		{"timestamp not a number", testSecret, testNow, "yesterday", sig, body, "malformed X-Phoenix-Timestamp"},
		{"timestamp negative", testSecret, testNow, "-" + ts, sig, body, "malformed X-Phoenix-Timestamp"},
		{"timestamp with leading zero", testSecret, testNow, "0" + ts, sig, body, "malformed X-Phoenix-Timestamp"},
		{"timestamp in milliseconds", testSecret, testNow, ts + "000", sig, body, "signature does not match"},
		{"timestamp huge", testSecret, testNow, "99999999999999999999", sig, body, "malformed X-Phoenix-Timestamp"},
		{"signature without prefix", testSecret, testNow, ts, strings.TrimPrefix(sig, "sha256="), body, "malformed X-Phoenix-Signature"},
		{"signature sha1", testSecret, testNow, ts, "sha1=" + strings.TrimPrefix(sig, "sha256="), body, "malformed X-Phoenix-Signature"},
		{"signature upper case", testSecret, testNow, ts, "sha256=" + strings.ToUpper(strings.TrimPrefix(sig, "sha256=")), body, "malformed X-Phoenix-Signature"},
		{"signature short", testSecret, testNow, ts, sig[:len(sig)-2], body, "malformed X-Phoenix-Signature"},
		{"signature not hex", testSecret, testNow, ts, sig[:len(sig)-1] + "g", body, "malformed X-Phoenix-Signature"},
		{"wrong key", testSecret, testNow, ts, wrongKey, body, "signature does not match"},
		{"other timestamp", testSecret, testNow, ts, otherSig, body, "signature does not match"},
		{"timestamp changed", testSecret, testNow, otherTS, sig, body, "signature does not match"},
		{"body changed", testSecret, testNow, ts, sig, append([]byte(nil), append(body, ' ')...), "signature does not match"},
		{"stale", testSecret, testNow.Add(5*time.Minute + time.Second), ts, sig, body, "is 5m1s old, outside the 5m0s window"},
		{"future", testSecret, testNow.Add(-6 * time.Minute), ts, sig, body, "is 6m0s in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.now, 5*time.Minute, tt.ts, tt.sig, tt.body)
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("got %v, want ErrUnauthorized", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %q, want it to contain %q", err, tt.msg)
			}
			expected := strings.TrimPrefix(sig, "sha256=")
			if strings.Contains(err.Error(), string(testSecret)) || strings.Contains(err.Error(), expected[:16]) {
				t.Errorf("%q reveals the secret or the expected signature", err)
			}
		})
	}
}

func TestVerifyAny(t *testing.T) {
	other := []byte("another-webhook-key-0123456789abcdef")
	body := []byte(`{"id":"a","type":"image.published"}`)
	ts, sig := Sign(other, testNow, body)
	tests := []struct {
		name    string
		secrets [][]byte
		which   int
		err     string
	}{
		{"second of two", [][]byte{testSecret, other}, 1, ""},
		{"first of two", [][]byte{other, testSecret}, 0, ""},
		{"an empty one skipped", [][]byte{testSecret, nil, other}, 2, ""},
		{"none matches", [][]byte{testSecret}, -1, "signature does not match"},
		{"all empty", [][]byte{nil, {}}, -1, "no secret configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			which, err := VerifyAny(tt.secrets, testNow, time.Minute, ts, sig, body)
			if which != tt.which || (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("VerifyAny = %d, %v; want %d, %q", which, err, tt.which, tt.err)
			}
		})
	}
	// A match with a stale timestamp is still refused.
	if _, err := VerifyAny([][]byte{testSecret, other}, testNow.Add(time.Hour), time.Minute, ts, sig, body); err == nil || !strings.Contains(err.Error(), "outside the") {
		t.Errorf("stale: %v", err)
	}
}

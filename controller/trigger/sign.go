package trigger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Header names and signing. The signature is HMAC-SHA256 over the
// timestamp (decimal Unix seconds), a ".", and the raw body, hex-encoded,
// sent as "sha256=<hex>".
const (
	HeaderTimestamp = "X-Phoenix-Timestamp"
	HeaderSignature = "X-Phoenix-Signature"
)

const signaturePrefix = "sha256="

// ErrUnauthorized is what every Verify error wraps.
var ErrUnauthorized = errors.New("unauthorized")

// Sign returns the two header values for body sent at ts.
func Sign(secret []byte, ts time.Time, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(ts.Unix(), 10)
	return timestamp, signaturePrefix + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks the headers against the body with constant-time
// comparison. Errors wrap ErrUnauthorized (missing header, malformed
// header, wrong signature, timestamp further than window from now in either
// direction). The error message says which of those, never the secret or
// the expected signature.
//
// Only the canonical forms Sign produces are accepted: the timestamp as
// decimal digits without sign or leading zeros, the signature as "sha256="
// and 64 lower-case hex digits. The signature is checked before the
// timestamp's age, so only a sender holding the secret learns that its
// clock is off; everyone else learns only that the signature is wrong.
func Verify(secret []byte, now time.Time, window time.Duration, timestamp, signature string, body []byte) error {
	_, err := VerifyAny([][]byte{secret}, now, window, timestamp, signature, body)
	return err
}

// VerifyAny is Verify with several secrets, as during a rotation: the
// request passes if it was signed with any of them, and which says with
// which (its index). Every secret is compared, so the time taken does not
// tell which one matched. Empty secrets are skipped.
func VerifyAny(secrets [][]byte, now time.Time, window time.Duration, timestamp, signature string, body []byte) (which int, err error) {
	if !slices.ContainsFunc(secrets, func(s []byte) bool { return len(s) > 0 }) {
		return -1, fmt.Errorf("%w: no secret configured", ErrUnauthorized)
	}
	if timestamp == "" {
		return -1, fmt.Errorf("%w: missing %s header", ErrUnauthorized, HeaderTimestamp)
	}
	if signature == "" {
		return -1, fmt.Errorf("%w: missing %s header", ErrUnauthorized, HeaderSignature)
	}
	secs, ok := parseTimestamp(timestamp)
	if !ok {
		return -1, fmt.Errorf("%w: malformed %s header: expected Unix seconds in decimal", ErrUnauthorized, HeaderTimestamp)
	}
	got, ok := parseSignature(signature)
	if !ok {
		return -1, fmt.Errorf("%w: malformed %s header: expected %q and 64 lower-case hex digits", ErrUnauthorized, HeaderSignature, signaturePrefix)
	}
	which = -1
	for i, s := range secrets {
		if len(s) > 0 && hmac.Equal(got, mac(s, timestamp, body)) && which < 0 {
			which = i
		}
	}
	if which < 0 {
		return -1, fmt.Errorf("%w: signature does not match the body and timestamp", ErrUnauthorized)
	}
	if age := now.Sub(time.Unix(secs, 0)); age > window || age < -window {
		dir := "old"
		if age < 0 {
			age, dir = -age, "in the future"
		}
		return -1, fmt.Errorf("%w: timestamp %s is %s %s, outside the %s window (check the sender's clock)",
			ErrUnauthorized, timestamp, age.Round(time.Second), dir, window)
	}
	return which, nil
}

func parseTimestamp(s string) (int64, bool) {
	if s == "" || len(s) > 18 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func parseSignature(s string) ([]byte, bool) {
	h, ok := strings.CutPrefix(s, signaturePrefix)
	if !ok || len(h) != 2*sha256.Size || strings.ToLower(h) != h {
		return nil, false
	}
	b, err := hex.DecodeString(h)
	return b, err == nil
}

package trigger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// maxAnswer bounds how much of an answer Send reads.
const maxAnswer = 64 << 10

// Send marshals e (its Time set to now when unset, so that the receiver
// knows the moment to the nanosecond), signs it with secret as of now,
// POSTs it to url with
// Content-Type application/json and returns the answer's status and body.
// err is non-nil only when there is no answer (or e is invalid: it is
// checked with Parse first, so a bad event never leaves); a refusal is a
// status, for the caller to judge.
//
// Retrying the POST is safe, and client may retry as it likes: the event
// id makes a repeat a 409, so an attempt whose answer was lost and that
// got through anyway shows up as 409 on the next attempt. Callers should
// treat 409 as success: the event was already accepted. Every attempt
// carries the same timestamp, so retries must end within the receiver's
// window (five minutes by default). For the last answer to reach the
// caller after retries on 5xx, set client.ErrorHandler to
// retryablehttp.PassthroughErrorHandler; with retryablehttp's default
// handler, exhausted retries come back as an error.
func Send(ctx context.Context, client *retryablehttp.Client, url string, secret []byte, e Event, now time.Time) (status int, body string, err error) {
	if e.Time.IsZero() {
		e.Time = now
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return 0, "", fmt.Errorf("event %s: %w", e.ID, err)
	}
	if _, err := Parse(payload); err != nil {
		return 0, "", fmt.Errorf("event %s not sent: %w", e.ID, err)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, url, payload)
	if err != nil {
		return 0, "", fmt.Errorf("event %s: %w", e.ID, err)
	}
	ts, sig := Sign(secret, now, payload)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, sig)
	resp, err := client.Do(req)
	if resp != nil {
		defer resp.Body.Close()
		answer, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		if rerr != nil {
			return resp.StatusCode, string(answer), fmt.Errorf("send event %s to %s: reading the answer: %w", e.ID, redact(url), rerr)
		}
		return resp.StatusCode, string(bytes.TrimSpace(answer)), nil
	}
	return 0, "", fmt.Errorf("send event %s to %s: %w", e.ID, redact(url), err)
}

// redact hides a password in a URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the URL"
	}
	return u.Redacted()
}

package openstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/phoenix-ops/phoenix/provisioner"
)

// The error predicates of this package live here, in one place.

// ConfigError is a connection that cannot work as configured: no
// clouds.yaml, no such cloud in it, credentials missing or refused by
// Keystone (400, 401), a region without the services Phoenix needs.
// Trying again changes nothing; the operator has to fix it.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// IsConfigError says whether err (from New) is a ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

func isNotFound(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusNotFound)
}

func statusOf(err error) (int, []byte, bool) {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return code.Actual, code.Body, true
	}
	return 0, nil, false
}

// classifyCreate turns the error of a server create into what the
// controller needs to know: refused for quota, refused for another reason
// (nothing was created), or an unknown outcome (the server may exist).
func classifyCreate(name string, err error) error {
	status, body, ok := statusOf(err)
	if !ok {
		// Timeout, connection reset, cancelled context: the request may
		// have reached Nova.
		return fmt.Errorf("create server %s: %w: %w", name, provisioner.ErrUnknownOutcome, err)
	}
	msg := cloudMessage(body)
	switch {
	case (status == http.StatusForbidden || status == http.StatusRequestEntityTooLarge) &&
		strings.Contains(strings.ToLower(msg), "quota"):
		return fmt.Errorf("create server %s: %w", name, &provisioner.QuotaError{Message: msg})
	case status == http.StatusTooManyRequests:
		return fmt.Errorf("create server %s: rate limited by the cloud (HTTP 429): %s", name, msg)
	case status >= 400 && status < 500:
		return fmt.Errorf("create server %s: %w", name, &provisioner.RefusedError{Status: status, Message: msg})
	default:
		return fmt.Errorf("create server %s: %w: HTTP %d: %s", name, provisioner.ErrUnknownOutcome, status, msg)
	}
}

// cloudMessage extracts the human message from an OpenStack error body.
// Nova wraps it as {"forbidden": {"message": ...}}, Keystone as {"error":
// {"message": ...}}, Neutron as {"NeutronError": {"message": ...}}, Octavia
// as {"faultstring": ...}; Glance
// often answers plain text.
func cloudMessage(body []byte) string {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err == nil {
		if m, ok := stringField(outer, "message"); ok {
			return m
		}
		// Octavia: {"faultcode": "Client", "faultstring": ...}.
		if m, ok := stringField(outer, "faultstring"); ok {
			return m
		}
		for _, raw := range outer {
			var inner map[string]json.RawMessage
			if json.Unmarshal(raw, &inner) == nil {
				if m, ok := stringField(inner, "message"); ok {
					return m
				}
			}
		}
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func stringField(m map[string]json.RawMessage, key string) (string, bool) {
	raw, ok := m[key]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/phoenix-ops/phoenix/provisioner"
)

func TestZoneRefused(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"a refusal", fmt.Errorf("create server web-1: %w", &provisioner.RefusedError{Status: 400, Message: "The requested availability zone is not available"}), true},
		{"no valid host, outcome unknown", fmt.Errorf("create server web-1: %w: HTTP 500: No valid host was found.", provisioner.ErrUnknownOutcome), true},
		{"quota", fmt.Errorf("create server web-1: %w", &provisioner.QuotaError{Message: "Quota exceeded for instances"}), false},
		{"rate limited", errors.New("create server web-1: rate limited by the cloud (HTTP 429): slow down"), false},
		{"a 500", fmt.Errorf("create server web-1: %w: HTTP 500: oops", provisioner.ErrUnknownOutcome), false},
		{"a timeout", fmt.Errorf("create server web-1: %w: %w", provisioner.ErrUnknownOutcome, context.DeadlineExceeded), false},
	}
	for _, tc := range cases {
		if got := zoneRefused(tc.err); got != tc.want {
			t.Errorf("%s: zoneRefused = %v, want %v", tc.name, got, tc.want)
		}
	}
}

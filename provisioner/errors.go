package provisioner

import (
	"errors"
	"fmt"
)

// ErrUnknownOutcome marks a create whose answer never arrived (timeout, a
// 5xx after the cloud may have acted, a dropped connection). The server may
// or may not exist; the next list by tag decides. Callers must not retry
// the create on their own.
var ErrUnknownOutcome = errors.New("outcome unknown: the cloud may have acted")

// ErrNotFound marks a name or ID that designates nothing.
var ErrNotFound = errors.New("not found")

// QuotaError is a create the cloud refused because the project's quota is
// full. Message is the cloud's own words, which tell the operator what to
// raise or free.
type QuotaError struct {
	Message string
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota exceeded: %s", e.Message)
}

// IsQuota reports whether err is, or wraps, a QuotaError.
func IsQuota(err error) bool {
	var q *QuotaError
	return errors.As(err, &q)
}

// RefusedError is a request the cloud answered with a definite refusal
// (a 4xx other than quota): nothing was done, and sending the same request
// again will not help until the spec or the cloud changes.
type RefusedError struct {
	Status  int
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refused by the cloud (HTTP %d): %s", e.Status, e.Message)
}

package controller

import (
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// rolloutLog gives every line of a group's log the id of the rollout under
// way, when one is. A daemon's group goes through many rollouts, each with
// its own id, and its reconciler's logger (and the health checker's and
// the traffic's, made from it) lives across them; the id is read at each
// write, so no logger needs to be made again when a rollout starts.
type rolloutLog struct {
	zapcore.Core
	id *atomic.Pointer[string]
}

func (c rolloutLog) With(fields []zapcore.Field) zapcore.Core {
	return rolloutLog{c.Core.With(fields), c.id}
}

func (c rolloutLog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c rolloutLog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if id := c.id.Load(); id != nil {
		fields = append(fields[:len(fields):len(fields)], zap.String("rollout", *id))
	}
	return c.Core.Write(e, fields)
}

// withRolloutLog wraps log so that its lines carry the id stored in id
// (none while it holds nil).
func withRolloutLog(log *zap.Logger, id *atomic.Pointer[string]) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return rolloutLog{c, id} }))
}

package cli

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LogFormat is --log-format: console for people, json for a log shipper.
// It is a flag value so that a wrong one is refused while the flags are
// parsed (exit 2), before any command runs.
type LogFormat string

// The log formats.
const (
	LogConsole LogFormat = "console"
	LogJSON    LogFormat = "json"
)

func (f *LogFormat) String() string { return string(*f) }

// Set implements pflag.Value.
func (f *LogFormat) Set(s string) error {
	switch LogFormat(s) {
	case LogConsole, LogJSON:
		*f = LogFormat(s)
		return nil
	}
	return fmt.Errorf("expected console or json")
}

// Type implements pflag.Value.
func (f *LogFormat) Type() string { return "format" }

// NewLoggerFormat is a command's log on stderr at level, in format. Both
// formats write durations with their unit ("2s", not 2), skip empty
// fields, and keep stack traces for panics: an error line is for an
// operator, and says what went wrong in its message and fields.
func NewLoggerFormat(level string, format LogFormat) (*zap.Logger, error) {
	return newLogger(level, format, zapcore.Lock(os.Stderr))
}

func newLogger(level string, format LogFormat, w zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, UsageError(fmt.Errorf("--log-level: %w", err))
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	enc := zapcore.NewConsoleEncoder(ec)
	if format == LogJSON {
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := skipEmpty{zapcore.NewCore(enc, w, lvl)}
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(zap.PanicLevel), zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}

// skipEmpty leaves out fields that say nothing: an empty string (a reason
// not given, a server with no address yet) or a zero time. Numbers and
// booleans stay, zero or not: 0 unhealthy is news.
type skipEmpty struct{ zapcore.Core }

func (c skipEmpty) With(fields []zapcore.Field) zapcore.Core {
	return skipEmpty{c.Core.With(nonEmpty(fields))}
}

func (c skipEmpty) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c skipEmpty) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.Core.Write(e, nonEmpty(fields))
}

// nonEmpty is fields without the empty ones; it copies only when it must.
func nonEmpty(fields []zapcore.Field) []zapcore.Field {
	for i, f := range fields {
		if isEmpty(f) {
			out := append([]zapcore.Field(nil), fields[:i]...)
			for _, f := range fields[i+1:] {
				if !isEmpty(f) {
					out = append(out, f)
				}
			}
			return out
		}
	}
	return fields
}

func isEmpty(f zapcore.Field) bool {
	switch f.Type {
	case zapcore.StringType:
		return f.String == ""
	case zapcore.StringerType:
		return emptyStringer(f.Interface)
	case zapcore.TimeFullType:
		t, ok := f.Interface.(time.Time)
		return ok && t.IsZero()
	}
	return false
}

// emptyStringer says whether v prints as nothing; one that panics (a nil
// pointer) is left for zap to print as it does.
func emptyStringer(v any) (empty bool) {
	defer func() {
		if recover() != nil {
			empty = false
		}
	}()
	s, ok := v.(fmt.Stringer)
	return ok && s.String() == ""
}

package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestSignalCode(t *testing.T) {
	failed := NotDone(errors.New("rollout did not converge"))
	cases := []struct {
		name string
		err  error
		sig  os.Signal
		want int
	}{
		{"no signal, done", nil, nil, ExitOK},
		{"no signal, not done", failed, nil, ExitNotDone},
		{"no signal, bad flag", errors.New("unknown flag"), nil, ExitUsage},
		{"SIGINT cuts a run short", failed, os.Interrupt, ExitInterrupted},
		{"SIGINT, even when the command then stopped cleanly", nil, os.Interrupt, ExitInterrupted},
		{"SIGTERM cuts a run short", failed, syscall.SIGTERM, ExitTerminated},
		{"SIGTERM, the daemon's clean stop", nil, syscall.SIGTERM, ExitOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SignalCode(tc.err, tc.sig); got != tc.want {
				t.Errorf("SignalCode = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestLogFormatFlag(t *testing.T) {
	var f LogFormat
	for _, ok := range []string{"console", "json"} {
		if err := f.Set(ok); err != nil || string(f) != ok {
			t.Errorf("Set(%q): %v, %q", ok, err, f)
		}
	}
	if err := f.Set("logfmt"); err == nil {
		t.Error("Set(logfmt) accepted")
	}
}

// logged writes one line with log and returns what came out.
func logged(t *testing.T, format LogFormat, write func(*zap.Logger)) string {
	t.Helper()
	var buf bytes.Buffer
	log, err := newLogger("debug", format, zapcore.AddSync(&buf))
	if err != nil {
		t.Fatal(err)
	}
	write(log)
	return buf.String()
}

func TestJSONLogLines(t *testing.T) {
	out := logged(t, LogJSON, func(log *zap.Logger) {
		log = log.With(zap.String("group", "web"), zap.String("rollout", ""))
		log.Error("reconcile failed", zap.Duration("wait", 2*time.Second), zap.String("reason", ""),
			zap.Time("since", time.Time{}), zap.Int("unhealthy", 0), zap.Error(errors.New("boom")))
	})
	var line map[string]any
	if err := json.Unmarshal([]byte(out), &line); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if line["wait"] != "2s" {
		t.Errorf("wait = %#v, want the string \"2s\"", line["wait"])
	}
	for _, absent := range []string{"rollout", "reason", "since", "stacktrace"} {
		if _, ok := line[absent]; ok {
			t.Errorf("the line carries %s: %s", absent, out)
		}
	}
	for _, present := range []string{"group", "unhealthy", "error", "msg", "level", "ts"} {
		if _, ok := line[present]; !ok {
			t.Errorf("the line lacks %s: %s", present, out)
		}
	}
}

func TestConsoleLogLines(t *testing.T) {
	out := logged(t, LogConsole, func(log *zap.Logger) {
		log.Error("reconcile failed", zap.Duration("wait", 1500*time.Millisecond), zap.String("reason", ""))
	})
	if !strings.Contains(out, `"wait": "1.5s"`) {
		t.Errorf("console line lacks the duration with its unit:\n%s", out)
	}
	if strings.Contains(out, "reason") {
		t.Errorf("console line carries an empty field:\n%s", out)
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("an error line spans several lines (a stack trace?):\n%s", out)
	}
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// A scaled soak: the daemon through eight rollouts with faults, every
// group converging each time, and the process back at its baseline of
// goroutines and heap after each.
func TestSoakReturnsToBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: eight rollouts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	samples, err := soak(ctx, soakOptions{Rollouts: 8, Groups: 3, Servers: 3, Faults: true, Seed: 7,
		RolloutTimeout: time.Minute, Log: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		Sampled: func(s soakSample) {
			t.Logf("rollout %d: %.2fs, %d goroutines, heap %.1f MiB (in use %.1f MiB)", s.Rollout, s.Seconds, s.Goroutines, s.HeapAllocMiB, s.HeapInuseMiB)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 9 {
		t.Fatalf("%d samples, want the build and 8 rollouts", len(samples))
	}
	r := judgeSoak(samples, defaultSoakBounds)
	t.Logf("baseline %d goroutines, heap %.1f MiB; max over it: %+d goroutines, %+.1f MiB", r.Baseline.Goroutines, r.Baseline.HeapAllocMiB, r.MaxGoroutines, r.MaxHeapMiB)
	if !r.Pass {
		t.Errorf("soak failed: %s", strings.Join(r.Problems, "; "))
	}
}

// judgeSoak fails what leaks and passes what only wobbles.
func TestJudgeSoak(t *testing.T) {
	// series builds samples from goroutine counts and heaps in MiB, one
	// per rollout from 1 (the baseline) on.
	series := func(goroutines []int, heap []float64) []soakSample {
		out := []soakSample{{Rollout: 0, Goroutines: 200, HeapAllocMiB: 40}} // the build is not judged
		for i := range goroutines {
			out = append(out, soakSample{Rollout: i + 1, Goroutines: goroutines[i], HeapAllocMiB: heap[i]})
		}
		return out
	}
	flat := func(n int, v float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	tests := []struct {
		name       string
		goroutines []int
		heap       []float64
		pass       bool
		problem    string
	}{
		{"steady", []int{56, 56, 57, 56, 56, 58, 56, 56, 56}, flat(9, 1.5), true, ""},
		{"a transient wobble within the slack", []int{56, 66, 56, 60, 56, 56, 57, 56, 56}, []float64{1.5, 1.6, 1.4, 2.0, 1.5, 1.5, 1.6, 1.5, 1.5}, true, ""},
		{"a goroutine leaked per server replaced", []int{56, 68, 80, 92, 104, 116, 128, 140, 152}, flat(9, 1.5), false, "rollout 2: 68 goroutines, bound 66"},
		{"a goroutine leaked per rollout", []int{56, 57, 58, 59, 60, 61, 62, 63, 64}, flat(9, 1.5), false, "a slow leak"},
		{"heap growing", []int{56, 56, 56, 56, 56, 56, 56, 56, 56}, []float64{2, 3, 4, 5, 6, 7, 8, 9, 12}, false, "rollout 8: heap 9.0 MiB, bound 7.0 MiB"},
		{"heap growing slowly", []int{56, 56, 56, 56, 56, 56, 56, 56, 56}, []float64{2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6}, false, "heap never came back within 1.2 MiB of its early level"},
		{"a baseline caught at an idle moment", []int{46, 49, 49, 49, 49, 49, 49, 49, 49}, flat(9, 1.7), true, ""},
		{"heap wobbling", []int{56, 56, 56, 56, 56, 56, 56, 56, 56}, []float64{2, 4, 2.2, 5, 2, 2.1, 6, 2.3, 4}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := judgeSoak(series(tt.goroutines, tt.heap), defaultSoakBounds)
			if r.Pass != tt.pass {
				t.Fatalf("pass %v, want %v: %q", r.Pass, tt.pass, r.Problems)
			}
			if tt.problem != "" && !strings.Contains(strings.Join(r.Problems, "\n"), tt.problem) {
				t.Errorf("problems %q, want one saying %q", r.Problems, tt.problem)
			}
		})
	}
	if r := judgeSoak([]soakSample{{Rollout: 0}}, defaultSoakBounds); r.Pass {
		t.Error("passed a run without a baseline")
	}
}

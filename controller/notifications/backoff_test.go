package notifications

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 30 * time.Second}
	tests := []struct {
		failures int
		rnd      float64
		want     time.Duration
	}{
		{1, 0, time.Second}, // the first wait is Min, whatever the draw
		{1, 0.999, time.Second},
		{2, 0, time.Second},
		{2, 0.5, 1500 * time.Millisecond},
		{3, 0, 2 * time.Second},
		{3, 0.5, 3 * time.Second},
		{5, 0, 8 * time.Second},
		{6, 0.5, 22500 * time.Millisecond}, // the step is capped at 30s
		{6, 0, 15 * time.Second},
		{100, 0.999, 29985 * time.Millisecond},
	}
	for _, tt := range tests {
		got := b.delay(tt.failures, tt.rnd)
		if got != tt.want {
			t.Errorf("delay(%d, %v) = %s, want %s", tt.failures, tt.rnd, got, tt.want)
		}
		if got < b.Min || got > b.Max {
			t.Errorf("delay(%d, %v) = %s, outside [%s, %s]", tt.failures, tt.rnd, got, b.Min, b.Max)
		}
	}
}

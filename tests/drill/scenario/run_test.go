package scenario

import (
	"testing"
	"time"
)

func TestUnavailability(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	success := func(end int) op { return op{start: at(end - 10), end: at(end), ok: true} }
	failure := func(end int) op { return op{start: at(end - 10), end: at(end)} }
	tests := []struct {
		name string
		ops  []op
		want time.Duration
	}{
		{"gap between successes", []op{success(50), success(1100), failure(1500), success(4100), success(4200)}, 3000 * time.Millisecond},
		{"gap from the fault start", []op{success(-20), success(2000), success(2100)}, 2000 * time.Millisecond},
		{"successes before the fault ignored", []op{success(-5000), success(100), success(200)}, 100 * time.Millisecond},
		{"no success after the fault", []op{success(-100), failure(700), failure(2500)}, 2500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unavailability(tt.ops, t0); got != tt.want {
				t.Errorf("unavailability = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFailureSpan(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ops := []op{
		{end: t0.Add(-time.Second)},
		{end: t0.Add(3 * time.Second)},
		{end: t0.Add(time.Second)},
		{end: t0.Add(5 * time.Second), ok: true},
	}
	first, last, ok := failureSpan(ops, t0)
	if !ok {
		t.Fatal("failureSpan found no failure after the fault")
	}
	if first != time.Second {
		t.Errorf("first failure %s, want 1s", first)
	}
	if last != 3*time.Second {
		t.Errorf("last failure %s, want 3s", last)
	}
	if _, _, ok := failureSpan(ops[3:], t0); ok {
		t.Error("failureSpan reported a failure among successes only")
	}
}

func TestLayerBytesReproducible(t *testing.T) {
	a, b := layerBytes(42, 4096), layerBytes(42, 4096)
	if string(a) != string(b) {
		t.Error("the same seed gave different content")
	}
	if string(a) == string(layerBytes(43, 4096)) {
		t.Error("different seeds gave the same content")
	}
}

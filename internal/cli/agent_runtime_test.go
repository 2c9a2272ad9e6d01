package cli

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestAgentRuntimeDefaults(t *testing.T) {
	procs, gc := runtime.GOMAXPROCS(0), debug.SetGCPercent(100)
	t.Cleanup(func() { runtime.GOMAXPROCS(procs); debug.SetGCPercent(gc) })

	tests := []struct {
		name      string
		env       map[string]string
		wantProcs int // 0: left as it was
		wantGC    int
	}{
		{name: "unset: one P, GOGC 50", env: nil, wantProcs: 1, wantGC: 50},
		{name: "the environment wins", env: map[string]string{"GOMAXPROCS": "2", "GOGC": "100"}, wantProcs: 0, wantGC: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GOMAXPROCS(3)
			debug.SetGCPercent(100)
			agentRuntimeDefaults(func(k string) string { return tt.env[k] })
			want := tt.wantProcs
			if want == 0 {
				want = 3
			}
			if got := runtime.GOMAXPROCS(0); got != want {
				t.Errorf("GOMAXPROCS = %d, want %d", got, want)
			}
			if got := debug.SetGCPercent(100); got != tt.wantGC {
				t.Errorf("GC percent = %d, want %d", got, tt.wantGC)
			}
		})
	}
}

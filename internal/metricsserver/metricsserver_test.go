package metricsserver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	notReady := errors.New("caches not synced")
	ready := notReady
	addr := freeAddr(t)
	stop, err := Serve(t.Context(), Options{Addr: addr, Registry: reg, Ready: func(context.Context) error { return ready }})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	base := "http://" + addr
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "herald_test_total 3") {
		t.Errorf("/metrics: %d %q", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "caches not synced") {
		t.Errorf("/readyz not ready: %d %q", code, body)
	}
	ready = nil
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz ready: %d", code)
	}
	stop()
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after stop")
	}
}

func TestServeWithoutReadyAndTakenPort(t *testing.T) {
	addr := freeAddr(t)
	stop, err := Serve(t.Context(), Options{Addr: addr, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if code, _ := get(t, "http://"+addr+"/readyz"); code != 404 {
		t.Errorf("/readyz without a check: %d, want 404", code)
	}
	if _, err := Serve(t.Context(), Options{Addr: addr, Registry: prometheus.NewRegistry()}); err == nil {
		t.Error("a taken port gave no error")
	}
}

// /healthz reflects the Healthy check: a wedged process answers 503 with
// the reason, so the kubelet restarts it.
func TestHealthz(t *testing.T) {
	var wedged atomic.Pointer[error]
	healthy := func(context.Context) error {
		if e := wedged.Load(); e != nil {
			return *e
		}
		return nil
	}
	addr := freeAddr(t)
	stop, err := Serve(t.Context(), Options{Addr: addr, Registry: prometheus.NewRegistry(), Healthy: healthy})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if code, _ := get(t, "http://"+addr+"/healthz"); code != 200 {
		t.Errorf("/healthz healthy: %d", code)
	}
	e := errors.New("main loop has not run for 42s")
	wedged.Store(&e)
	if code, body := get(t, "http://"+addr+"/healthz"); code != 503 || !strings.Contains(body, "main loop") {
		t.Errorf("/healthz wedged: %d %q", code, body)
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/herald-lb/herald/internal/lab"
	"github.com/herald-lb/herald/internal/lab/labnet"
	"github.com/herald-lb/herald/internal/testenv"
)

// promLab is a real Prometheus (built from hack/promtool's pinned module)
// in the lab's client namespace: it scrapes every agent and controller on
// the nodes' LAN addresses, as the chart's PodMonitors would (each target
// labelled with its node and Pod), and evaluates the chart's own
// PrometheusRule every second.
type promLab struct {
	http *http.Client
	base string
}

// startPrometheus starts Prometheus for the lab l and waits until every
// target is up. It stops when the function given to cleanup runs (a
// test's Cleanup: the test that outlives the subtests that use it).
func startPrometheus(t *testing.T, l *labEnv, s lab.State, cleanup func(func())) *promLab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	tools, err := testenv.PromTools(ctx)
	if err != nil {
		t.Fatalf("building Prometheus: %v", err)
	}
	// Not t.TempDir: Prometheus outlives the subtest that starts it.
	dir, err := os.MkdirTemp("", "herald-e2e-prometheus-")
	if err != nil {
		t.Fatal(err)
	}

	// The chart's rules, rendered as the chart installs them.
	chart := filepath.Join(l.root, "deploy", "helm", "herald")
	out, err := exec.Command(s.Tools.Helm, "template", "herald", chart, "-n", "kube-system",
		"-f", filepath.Join(chart, "values-talos.yaml"), "--set", "monitoring.prometheusRule.enabled=true",
		"--show-only", "templates/prometheusrule.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	var rule struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(out, &rule); err != nil || len(rule.Spec.Groups) == 0 {
		t.Fatalf("the chart's PrometheusRule has no groups (%v):\n%s", err, out)
	}
	rules, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}

	// The targets: each agent and controller Pod on its node's address.
	type target struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	var agents, controllers []target
	pods := l.kubectl("-n", "herald-system", "get", "pods", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.hostIP} {.metadata.labels.app\.kubernetes\.io/component}{"\n"}{end}`)
	for _, line := range strings.Split(pods, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		labels := map[string]string{"node": f[1], "pod": f[0], "namespace": "herald-system"}
		switch f[3] {
		case "agent":
			agents = append(agents, target{Targets: []string{f[2] + ":9471"}, Labels: labels})
		case "controller":
			controllers = append(controllers, target{Targets: []string{f[2] + ":9470"}, Labels: labels})
		}
	}
	if len(agents) != len(s.Topology.Nodes) || len(controllers) == 0 {
		t.Fatalf("want an agent on each of %d nodes and a controller, got agents %v, controllers %v (pods:\n%s)",
			len(s.Topology.Nodes), agents, controllers, pods)
	}
	config, err := yaml.Marshal(map[string]any{
		"global":     map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files": []string{filepath.Join(dir, "rules.yaml")},
		"scrape_configs": []any{
			map[string]any{"job_name": "herald-agent", "static_configs": agents},
			map[string]any{"job_name": "herald-controller", "static_configs": controllers},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yaml"), config, 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", s.Topology.Client.NetNS, tools.Prometheus,
		"--config.file="+filepath.Join(dir, "prometheus.yaml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:9090")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Prometheus: %v", err)
	}
	cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
		os.RemoveAll(dir)
	})
	p := &promLab{
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: labnet.Dialer(s.Topology.Client.NetNS)}},
		base: "http://127.0.0.1:9090",
	}
	eventually(t, 60*time.Second, "Prometheus scrapes every agent and controller", func() (bool, string) {
		var targets struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := p.get("/api/v1/targets", nil, &targets); err != nil {
			return false, err.Error()
		}
		var down []string
		for _, tg := range targets.ActiveTargets {
			if tg.Health != "up" {
				down = append(down, tg.ScrapeURL+" "+tg.Health+" "+tg.LastError)
			}
		}
		return len(targets.ActiveTargets) == len(agents)+len(controllers) && len(down) == 0,
			fmt.Sprintf("%d targets, not up: %v", len(targets.ActiveTargets), down)
	})
	return p
}

// get calls Prometheus's HTTP API and decodes its data into v.
func (p *promLab) get(path string, query url.Values, v any) error {
	u := p.base + path
	if query != nil {
		u += "?" + query.Encode()
	}
	resp, err := p.http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: %s: %w", path, body, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s", path, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// query evaluates expr now and returns how many series it gave.
func (p *promLab) query(expr string) (int, error) {
	var data struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return 0, err
	}
	return len(data.Result), nil
}

// alerts returns the active alerts (pending or firing), as
// "name{label=value,…} state", sorted.
func (p *promLab) alerts() ([]string, error) {
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range data.Alerts {
		var labels []string
		for k, v := range a.Labels {
			if k != "alertname" && k != "severity" {
				labels = append(labels, k+"="+v)
			}
		}
		sort.Strings(labels)
		out = append(out, a.Labels["alertname"]+"{"+strings.Join(labels, ",")+"} "+a.State)
	}
	sort.Strings(out)
	return out, nil
}

// waitAlert waits until an alert named name whose labels include the
// given ones ("reason=NoPolicy") is active: the chart's rule fires (is
// pending: each rule's "for" is minutes, longer than a test waits) on
// the lab's real metrics.
func (p *promLab) waitAlert(t *testing.T, name string, labels ...string) {
	t.Helper()
	eventually(t, 60*time.Second, "alert "+name+" "+strings.Join(labels, ",")+" active", func() (bool, string) {
		active, err := p.alerts()
		if err != nil {
			return false, err.Error()
		}
		for _, a := range active {
			if !strings.HasPrefix(a, name+"{") {
				continue
			}
			if !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(a, l) }) {
				t.Logf("Prometheus: %s", a)
				return true, ""
			}
		}
		return false, fmt.Sprintf("active: %v", active)
	})
}

// waitQuiet waits until no alert is active except those named in except.
func (p *promLab) waitQuiet(t *testing.T, except ...string) {
	t.Helper()
	eventually(t, 60*time.Second, "no alert active", func() (bool, string) {
		active, err := p.alerts()
		if err != nil {
			return false, err.Error()
		}
		active = slices.DeleteFunc(active, func(a string) bool {
			return slices.ContainsFunc(except, func(e string) bool { return strings.HasPrefix(a, e+"{") })
		})
		return len(active) == 0, fmt.Sprintf("active: %v", active)
	})
}

// dashboardQueries returns the PromQL of every panel of the chart's
// dashboard, by panel title, with Grafana's variables as a user sees them
// with every node selected.
func dashboardQueries(t *testing.T, root string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "herald", "dashboards", "herald.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "$node", ".*")
	out := map[string][]string{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				out[p.Title] = append(out[p.Title], vars.Replace(tg.Expr))
			}
		}
	}
	return out
}

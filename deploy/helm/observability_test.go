package helm_test

// The chart's observability: the monitors, the Grafana dashboard and the
// PrometheusRule. The rules are checked and unit-tested with promtool, and
// every PromQL expression of the rules and the dashboard is parsed with
// Prometheus's parser; each metric it names must be one Herald's binaries
// expose (or kube-state-metrics', listed below).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/herald-lb/herald/internal/testenv"
	"github.com/herald-lb/herald/internal/testrequire"
)

// dashboardFile is the Grafana dashboard the chart ships.
const dashboardFile = "herald/dashboards/herald.json"

// alertTestsFile holds promtool's unit tests of the alerts.
const alertTestsFile = "testdata/alerts_test.yaml"

// kubeStateMetrics are the kube-state-metrics series the alerts use: not
// Herald's, so not found in its sources.
var kubeStateMetrics = []string{
	"kube_daemonset_status_desired_number_scheduled",
	"kube_daemonset_status_number_available",
}

// monitoringValues turns every observability option on, with reachable
// metrics addresses.
func monitoringValues() map[string]any {
	return map[string]any{
		"controller": map[string]any{"metricsAddr": "0.0.0.0:9470"},
		"agent":      map[string]any{"metricsAddr": "0.0.0.0:9471"},
		"monitoring": map[string]any{
			"labels":         map[string]any{"release": "kube-prometheus-stack"},
			"podMonitor":     map[string]any{"enabled": true},
			"serviceMonitor": map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
		},
		"grafana": map[string]any{"dashboard": map[string]any{"enabled": true}},
	}
}

// Off by default: no monitoring object, no container port (the agent's
// would open one on the node's network).
func TestObservabilityOffByDefault(t *testing.T) {
	o := mustRender(t, "herald-system", nil, nil)
	for _, kind := range []string{"PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap"} {
		if got := o.ofKind(kind); len(got) > 0 {
			t.Errorf("default render has a %s %s", kind, got[0].GetName())
		}
	}
	if svcs := o.ofKind("Service"); len(svcs) > 0 {
		t.Errorf("default render has a Service %s", svcs[0].GetName())
	}
	ds := get[appsv1.DaemonSet](t, o, "DaemonSet", "herald-agent")
	dep := get[appsv1.Deployment](t, o, "Deployment", "herald-controller")
	for _, c := range append(ds.Spec.Template.Spec.Containers, dep.Spec.Template.Spec.Containers...) {
		if len(c.Ports) > 0 {
			t.Errorf("container %s declares ports %v by default", c.Name, c.Ports)
		}
	}
}

// A monitor with a loopback metrics address cannot scrape anything: the
// render fails and says which value to set.
func TestMonitorsNeedReachableMetrics(t *testing.T) {
	for _, monitor := range []string{"podMonitor", "serviceMonitor"} {
		for _, tc := range []struct {
			controller, agent string
			wantErr           string // "" renders
		}{
			{"127.0.0.1:9470", "127.0.0.1:9471", "metricsAddr is \"127.0.0.1:9471\" (loopback)"},
			{"0.0.0.0:9470", "127.0.0.1:9471", "agent.metricsAddr"},
			{"localhost:9470", "0.0.0.0:9471", "controller.metricsAddr is \"localhost:9470\""},
			{"0.0.0.0:9470", "[::1]:9471", "agent.metricsAddr is \"[::1]:9471\""},
			{"0.0.0.0:9470", "127.1.2.3:9471", "agent.metricsAddr"},
			{":9470", "[::]:9471", ""},
			{"0.0.0.0:9470", "10.0.0.1:9471", ""},
		} {
			t.Run(fmt.Sprintf("%s/%s/%s", monitor, tc.controller, tc.agent), func(t *testing.T) {
				vals := readValues(t, nil, map[string]any{
					"controller": map[string]any{"metricsAddr": tc.controller},
					"agent":      map[string]any{"metricsAddr": tc.agent},
					"monitoring": map[string]any{monitor: map[string]any{"enabled": true}},
				})
				_, err := render(t, "herald-system", vals)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Fatalf("render: %v", err)
				case tc.wantErr != "" && err == nil:
					t.Fatalf("rendered with a loopback metrics address; want an error naming %q", tc.wantErr)
				case tc.wantErr != "" && (!strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "monitoring."+monitor)):
					t.Fatalf("error %q should name monitoring.%s and %q", err, monitor, tc.wantErr)
				}
			})
		}
	}
}

// The monitors select each part's Pods (or its metrics Service) by the
// port the containers now declare, and label targets with their node.
func TestMonitors(t *testing.T) {
	o := mustRender(t, "herald-system", nil, monitoringValues())
	ports := map[string]int32{"controller": 9470, "agent": 9471}
	ds := get[appsv1.DaemonSet](t, o, "DaemonSet", "herald-agent")
	dep := get[appsv1.Deployment](t, o, "Deployment", "herald-controller")
	for part, spec := range map[string]corev1.PodSpec{"agent": ds.Spec.Template.Spec, "controller": dep.Spec.Template.Spec} {
		c := spec.Containers[0]
		if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != ports[part] {
			t.Errorf("%s container ports %v, want metrics: %d", part, c.Ports, ports[part])
		}
	}
	for _, kind := range []string{"PodMonitor", "ServiceMonitor"} {
		for part := range ports {
			name := "herald-" + part
			u := o.find(kind, name)
			if u == nil {
				t.Errorf("no %s %s", kind, name)
				continue
			}
			if u.GetNamespace() != "herald-system" || u.GetLabels()["release"] != "kube-prometheus-stack" {
				t.Errorf("%s %s: namespace %q, labels %v; want herald-system and monitoring.labels", kind, name, u.GetNamespace(), u.GetLabels())
			}
			sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
			if sel["app.kubernetes.io/component"] != part || sel["app.kubernetes.io/instance"] != "herald" {
				t.Errorf("%s %s selects %v", kind, name, sel)
			}
			field := "podMetricsEndpoints"
			if kind == "ServiceMonitor" {
				field = "endpoints"
			}
			eps, _, _ := unstructured.NestedSlice(u.Object, "spec", field)
			if len(eps) != 1 {
				t.Fatalf("%s %s: %d endpoints", kind, name, len(eps))
			}
			ep := eps[0].(map[string]any)
			if ep["port"] != "metrics" || ep["path"] != "/metrics" {
				t.Errorf("%s %s endpoint %v", kind, name, ep)
			}
			if !strings.Contains(fmt.Sprint(ep["relabelings"]), "__meta_kubernetes_pod_node_name") {
				t.Errorf("%s %s does not label targets with their node: %v", kind, name, ep["relabelings"])
			}
		}
	}
	for part, port := range ports {
		svc := get[corev1.Service](t, o, "Service", "herald-"+part+"-metrics")
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != port ||
			svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Selector["app.kubernetes.io/component"] != part {
			t.Errorf("metrics Service of %s: %+v", part, svc.Spec)
		}
		if svc.Labels["app.kubernetes.io/component"] != part {
			t.Errorf("metrics Service of %s has labels %v: its ServiceMonitor selects by component", part, svc.Labels)
		}
	}
}

// Everything on lints clean and renders the same twice.
func TestObservabilityLintAndReproducible(t *testing.T) {
	lint := action.NewLint()
	lint.Namespace = "herald-system"
	lint.KubeVersion = kubeVersion
	res := lint.Run([]string{chartDir}, readValues(t, nil, monitoringValues()))
	for _, err := range res.Errors {
		t.Errorf("lint error: %v", err)
	}
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("lint: %s", m)
		}
	}
	a, err := renderManifest(t, "herald-system", readValues(t, nil, monitoringValues()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := renderManifest(t, "herald-system", readValues(t, nil, monitoringValues()))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Error("two renders with every observability option differ")
	}
}

// The dashboard ships as a ConfigMap the Grafana sidecar picks up by its
// label; label, namespace and annotations are values.
func TestGrafanaDashboard(t *testing.T) {
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	o := mustRender(t, "herald-system", nil, map[string]any{"grafana": map[string]any{"dashboard": map[string]any{"enabled": true}}})
	cm := get[corev1.ConfigMap](t, o, "ConfigMap", "herald-dashboard")
	if cm.Namespace != "herald-system" || cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap in %q with labels %v; want herald-system and grafana_dashboard: \"1\"", cm.Namespace, cm.Labels)
	}
	if got := cm.Data["herald.json"]; strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
		t.Errorf("the ConfigMap's herald.json is not %s", dashboardFile)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["herald.json"]), &dash); err != nil {
		t.Fatalf("herald.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard uid %q, title %q", dash.UID, dash.Title)
	}
	var titles []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		titles = append(titles, p.Title)
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q uses datasource %q, want the ${datasource} variable", p.Title, p.Datasource.UID)
		}
	}
	// What the dashboard is for.
	for _, want := range []string{"Pool usage", "Services by allocation", "Services by announcement", "Addresses answered per node",
		"Take-overs", "Take-over latency", "Peers", "Heartbeats", "Heartbeat key mismatches", "Address conflicts", "Controller leader"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q (panels: %v)", want, titles)
		}
	}

	o = mustRender(t, "herald-system", nil, map[string]any{"grafana": map[string]any{"dashboard": map[string]any{
		"enabled": true, "namespace": "monitoring",
		"labels":      map[string]any{"grafana_dashboard": nil, "dashboards": "herald"},
		"annotations": map[string]any{"grafana_folder": "Herald"},
	}}})
	cm = get[corev1.ConfigMap](t, o, "ConfigMap", "herald-dashboard")
	if cm.Namespace != "monitoring" || cm.Labels["dashboards"] != "herald" || cm.Annotations["grafana_folder"] != "Herald" {
		t.Errorf("dashboard ConfigMap in %q, labels %v, annotations %v; want the values'", cm.Namespace, cm.Labels, cm.Annotations)
	}
	if _, ok := cm.Labels["grafana_dashboard"]; ok {
		t.Errorf("the default label stayed although the values removed it: %v", cm.Labels)
	}
}

// promTools builds (or finds cached) promtool and promqlnames. It skips
// when the machine cannot build them, except under CI=true, where it
// fails; with -short (outside CI) it skips rather than build.
func promTools(t *testing.T) testenv.PromPaths {
	t.Helper()
	if testing.Short() && !testrequire.InCI() {
		t.Skip("builds promtool from hack/promtool (minutes, the first time); run without -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	p, err := testenv.PromTools(ctx)
	if err != nil {
		testrequire.Missing(t, "promtool: %v", err)
	}
	return p
}

// renderedRules renders the PrometheusRule for release herald in
// herald-system and returns its spec.groups as a Prometheus rules file.
func renderedRules(t *testing.T) []byte {
	t.Helper()
	o := mustRender(t, "herald-system", nil, map[string]any{"monitoring": map[string]any{"prometheusRule": map[string]any{"enabled": true}}})
	rules := o.ofKind("PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules rendered, want 1", len(rules))
	}
	if rules[0].GetNamespace() != "herald-system" || rules[0].GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Errorf("PrometheusRule %s in %q", rules[0].GetAPIVersion(), rules[0].GetNamespace())
	}
	groups, ok, err := unstructured.NestedSlice(rules[0].Object, "spec", "groups")
	if err != nil || !ok {
		t.Fatalf("PrometheusRule has no spec.groups: %v", err)
	}
	out, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ruleFile is the part of a Prometheus rules file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert  string            `json:"alert"`
			Record string            `json:"record"`
			Expr   string            `json:"expr"`
			Labels map[string]string `json:"labels"`
		} `json:"rules"`
	} `json:"groups"`
}

// alertTests is the part of promtool's unit test file the tests read.
type alertTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func runTool(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The rendered rules pass `promtool check rules`, and `promtool test
// rules` runs testdata/alerts_test.yaml against them: for every alert,
// series that fire it and series that must not.
func TestPrometheusRules(t *testing.T) {
	tools := promTools(t)
	rules := renderedRules(t)
	var rf ruleFile
	if err := yaml.Unmarshal(rules, &rf); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
				if s := r.Labels["severity"]; s != "warning" && s != "critical" {
					t.Errorf("alert %s has severity %q", r.Alert, s)
				}
			}
		}
	}
	for _, want := range []string{"HeraldPoolExhausted", "HeraldPoolNearlyFull", "HeraldServicePending", "HeraldServiceNotAnnounced",
		"HeraldAddressConflict", "HeraldHeartbeatKeyMismatch", "HeraldAgentMissing", "HeraldBGPSessionDown", "HeraldControllerNoLeader"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s (alerts: %v)", want, alerts)
		}
	}

	testsYAML, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	var at alertTests
	if err := yaml.Unmarshal(testsYAML, &at); err != nil {
		t.Fatalf("%s: %v", alertTestsFile, err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range at.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a] || !quiet[a] {
			t.Errorf("%s: alert %s needs a case that fires it (%v) and one that must not (%v)", alertTestsFile, a, fires[a], quiet[a])
		}
	}
	if len(at.RuleFiles) != 1 {
		t.Fatalf("%s names rule files %v, want the one this test writes", alertTestsFile, at.RuleFiles)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, at.RuleFiles[0]), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), testsYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(runTool(t, dir, tools.Promtool, "check", "rules", at.RuleFiles[0]))
	t.Log(runTool(t, dir, tools.Promtool, "test", "rules", "alerts_test.yaml"))
}

// Every PromQL expression of the rules and the dashboard parses, and names
// only metrics Herald's binaries expose (or kube-state-metrics'): a renamed
// metric or a typo fails here, not in a cluster.
func TestPromQLNamesExposedMetrics(t *testing.T) {
	tools := promTools(t)
	known := exposedMetrics(t)

	var rf ruleFile
	if err := yaml.Unmarshal(renderedRules(t), &rf); err != nil {
		t.Fatal(err)
	}
	var exprs, where []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			where = append(where, "rule "+r.Alert+r.Record)
		}
	}
	dash, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dexprs, dwhere := dashboardExprs(t, dash)
	exprs, where = append(exprs, dexprs...), append(where, dwhere...)
	if len(dexprs) < 15 {
		t.Fatalf("found %d expressions in the dashboard; the walk is broken", len(dexprs))
	}

	results := promqlNames(t, tools.PromQLNames, exprs)
	used := map[string]bool{}
	for i, r := range results {
		if r.Error != "" {
			t.Errorf("%s: %q does not parse: %s", where[i], exprs[i], r.Error)
			continue
		}
		if len(r.Names) == 0 {
			t.Errorf("%s: %q names no metric", where[i], exprs[i])
		}
		for _, n := range unknownNames(r.Names, known) {
			t.Errorf("%s: %q uses %s, which no Herald binary exposes", where[i], exprs[i], n)
		}
		for _, n := range r.Names {
			used[n] = true
		}
	}
	t.Logf("%d expressions use %d metrics, of %d known", len(exprs), len(used), len(known))

	// The check itself can fail: a misspelt name is unknown, and so is a
	// histogram's series with a suffix a gauge does not have.
	typo := promqlNames(t, tools.PromQLNames, []string{`max(herald_controller_leadr) == 0`, `herald_controller_leader_bucket`, `herald_agent_takeover_seconds_bucket`})
	if got := unknownNames(typo[0].Names, known); !slices.Equal(got, []string{"herald_controller_leadr"}) {
		t.Errorf("a misspelt metric name was not caught: unknown %v", got)
	}
	if got := unknownNames(typo[1].Names, known); len(got) != 1 {
		t.Errorf("a gauge's _bucket series was not caught: unknown %v", got)
	}
	if got := unknownNames(typo[2].Names, known); len(got) != 0 {
		t.Errorf("a histogram's _bucket series was refused: unknown %v", got)
	}
}

// unknownNames returns the names not in known.
func unknownNames(names []string, known map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !known[n] {
			out = append(out, n)
		}
	}
	return out
}

// promqlResult is promqlnames' answer for one expression.
type promqlResult struct {
	Expr  string   `json:"expr"`
	Names []string `json:"names"`
	Error string   `json:"error"`
}

// promqlNames runs promqlnames on exprs.
func promqlNames(t *testing.T, bin string, exprs []string) []promqlResult {
	t.Helper()
	in, err := json.Marshal(exprs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promqlnames: %v\n%s", err, stderr.String())
	}
	var res []promqlResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("promqlnames output: %v", err)
	}
	if len(res) != len(exprs) {
		t.Fatalf("promqlnames answered %d of %d expressions", len(res), len(exprs))
	}
	return res
}

// grafanaVar is a dashboard variable in an expression: $name or ${name}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// labelValues is a template variable's query label_values(expr, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// dashboardExprs returns every PromQL expression of the dashboard (panel
// targets, nested rows included, and query variables), Grafana's
// variables replaced by what Prometheus would see, with where each is.
func dashboardExprs(t *testing.T, dash []byte) (exprs, where []string) {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	subst := func(e string) string {
		return grafanaVar.ReplaceAllStringFunc(e, func(v string) string {
			switch grafanaVar.FindStringSubmatch(v)[1] {
			case "__rate_interval", "__interval", "__range":
				return "5m"
			default: // a variable in a regex matcher (node=~"$node")
				return ".*"
			}
		})
	}
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			pm, _ := p.(map[string]any)
			targets, _ := pm["targets"].([]any)
			for _, tg := range targets {
				if e, _ := tg.(map[string]any)["expr"].(string); e != "" {
					exprs = append(exprs, subst(e))
					where = append(where, fmt.Sprintf("panel %q", pm["title"]))
				}
			}
			if nested, ok := pm["panels"].([]any); ok {
				walk(nested)
			}
		}
	}
	panels, _ := d["panels"].([]any)
	walk(panels)
	templating, _ := d["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	for _, v := range vars {
		vm, _ := v.(map[string]any)
		if vm["type"] != "query" {
			continue
		}
		q, ok := vm["query"].(string)
		if !ok {
			q, _ = vm["query"].(map[string]any)["query"].(string)
		}
		m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
		if m == nil {
			t.Errorf("variable %v: query %q is not label_values(expr, label)", vm["name"], q)
			continue
		}
		exprs = append(exprs, subst(m[1]))
		where = append(where, fmt.Sprintf("variable %q", vm["name"]))
	}
	return exprs, where
}

// exposedMetrics returns the names of every series Herald's binaries can
// expose: the herald_* metrics declared in the non-test Go sources of the
// repository (prometheus.CounterOpts, GaugeOpts, HistogramOpts and
// SummaryOpts literals, with the series names a histogram or summary adds),
// the Go and process collectors both binaries register (gathered from the
// real collectors), and the kube-state-metrics series the alerts use.
func exposedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	add := func(name, kind string) {
		known[name] = true
		switch kind {
		case "HistogramOpts":
			known[name+"_bucket"], known[name+"_sum"], known[name+"_count"] = true, true, true
		case "SummaryOpts":
			known[name+"_sum"], known[name+"_count"] = true, true
		}
	}
	root := filepath.Join("..", "..")
	herald := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Other modules (hack/*) and the lab's state are not Herald's binaries.
			if name := d.Name(); path != root && (name == "hack" || name == "bin" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return fmt.Errorf("parse %s: %w", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok || pkg.Name != "prometheus" || !strings.HasSuffix(sel.Sel.Name, "Opts") {
				return true
			}
			for _, el := range lit.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key, _ := kv.Key.(*ast.Ident)
				if key == nil {
					continue
				}
				switch key.Name {
				case "Namespace", "Subsystem":
					t.Errorf("%s: %s.%s sets %s; this scan reads only Name", path, pkg.Name, sel.Sel.Name, key.Name)
				case "Name":
					bl, ok := kv.Value.(*ast.BasicLit)
					if !ok || bl.Kind != token.STRING {
						t.Errorf("%s: a metric Name that is not a string literal; this scan cannot read it", path)
						continue
					}
					name, err := strconv.Unquote(bl.Value)
					if err != nil {
						t.Errorf("%s: %v", path, err)
						continue
					}
					add(name, sel.Sel.Name)
					if strings.HasPrefix(name, "herald_") {
						herald++
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The scan must see what the tests of each package check is there.
	for _, name := range []string{"herald_controller_leader", "herald_ipam_pool_ips", "herald_agent_address_owned",
		"herald_agent_takeover_seconds_bucket", "herald_membership_peers", "herald_l2_gratuitous_total"} {
		if !known[name] {
			t.Fatalf("the source scan did not find %s (found %d herald_* metrics)", name, herald)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			add(mf.GetName(), "HistogramOpts")
		case dto.MetricType_SUMMARY:
			add(mf.GetName(), "SummaryOpts")
		default:
			add(mf.GetName(), "")
		}
	}
	for _, name := range kubeStateMetrics {
		add(name, "")
	}
	return known
}

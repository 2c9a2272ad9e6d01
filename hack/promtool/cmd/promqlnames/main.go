// Command promqlnames parses PromQL expressions with Prometheus's own parser
// (the promql/parser package of the prometheus module this module pins, the
// one promtool is built from) and prints the metric names each one selects,
// so that the chart's tests can check every name against the series Herald
// really exposes without the root module depending on Prometheus.
//
// It reads a JSON array of expressions on standard input and writes a JSON
// array of results in the same order:
//
//	[{"expr": "...", "names": ["herald_..."], "error": ""}]
//
// A selector that names no metric by equality (such as {job="x"} or
// {__name__=~"herald_.*"}) is an error: the names it would select cannot be
// checked. The exit status is 0 whenever the input was a JSON array of
// strings, parse errors included; they are reported per expression.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// result is what is printed for one expression.
type result struct {
	Expr  string   `json:"expr"`
	Names []string `json:"names"`
	Error string   `json:"error,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "promqlnames:", err)
		os.Exit(1)
	}
}

func run() error {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		return fmt.Errorf("read a JSON array of expressions: %w", err)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		out = append(out, names(p, e))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// names parses e and returns the metric names its selectors name.
func names(p parser.Parser, e string) result {
	r := result{Expr: e, Names: []string{}}
	expr, err := p.ParseExpr(e)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	for _, sel := range parser.ExtractSelectors(expr) {
		name := ""
		for _, m := range sel {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			r.Error = fmt.Sprintf("a selector names no metric by equality: %v", sel)
			return r
		}
		if !slices.Contains(r.Names, name) {
			r.Names = append(r.Names, name)
		}
	}
	slices.Sort(r.Names)
	return r
}

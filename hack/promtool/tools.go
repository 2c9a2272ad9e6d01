//go:build tools

// Package tools pins Prometheus's promtool, which the chart's tests run to
// check and unit-test the PrometheusRule (`promtool check rules`, `promtool
// test rules`), and the Prometheus server, which the lab's end-to-end test
// runs on the lab's real metrics with the chart's rules and dashboard
// queries. It is a module of its own so that Prometheus's dependencies
// (client-go among them) do not move the versions the root module or
// hack/tools pin.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)

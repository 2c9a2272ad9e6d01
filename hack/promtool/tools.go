//go:build tools

// Package tools pins Prometheus's promtool, which the chart's tests run to
// check and unit-test the PrometheusRule (`promtool check rules`, `promtool
// test rules`). It is a module of its own so that Prometheus's dependencies
// (client-go among them) do not move the versions the root module or
// hack/tools pin.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)

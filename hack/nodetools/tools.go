//go:build tools

// Package nodetools pins the node-side programs of the lab's real nodes:
// `go mod tidy` keeps the modules these imports need. testenv.NodeBinaries
// builds them; nothing imports this package.
package nodetools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/images/agnhost"
)

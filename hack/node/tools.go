//go:build tools

// Package tools pins the commands this module builds for the test node (scripts/control-plane
// build --node): the node's Kubernetes components, built from the same release as the control
// plane in hack/controlplane (a module of its own, so the control plane's cache key is unchanged).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)

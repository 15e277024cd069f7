// Package ext stands in for Traefik's nested module pkg/config/dynamic/ext, which the published
// module zip leaves out: the open-source build embeds these two empty types.
package ext

// HTTP holds extra dynamic HTTP configuration (none in the open-source build).
type HTTP struct{}

// Router holds extra router configuration (none in the open-source build).
type Router struct{}

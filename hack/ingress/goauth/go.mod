// Ours (see ../README.md): the package Traefik imports as github.com/abbot/go-http-auth, built on
// upstream v0.4.0 from the module proxy under a second path (../go.mod replaces both).
module github.com/abbot/go-http-auth

go 1.26.0

require deprovisioner.dev/upstream/go-http-auth v0.4.0

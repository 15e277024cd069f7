// Builds the test node's ingress controller: Traefik's own command, github.com/traefik/traefik/v3/cmd/traefik,
// unchanged (scripts/control-plane build --node; see README.md beside this file). Three modules of its
// graph cannot come from the module proxy, so they are replaced:
//   - github.com/traefik/traefik/dynamic/ext: a nested module of Traefik's repository, left out of the
//     published zip; ./ext holds its two empty types, as the open-source build has them;
//   - github.com/abbot/go-http-auth: Traefik uses its fork github.com/containous/go-http-auth, whose
//     version the proxy refuses; ./goauth (ours) is upstream v0.4.0 from the proxy, required under a
//     second path, plus the two functions Traefik calls that only the fork has;
//   - github.com/go-acme/lego/v5: lego v5.4.1 as the proxy serves it, copied to ./lego by the build
//     script with providers/dns/zz_gen_dns_providers.go replaced by _lego/ (no ACME DNS provider),
//     so the providers whose modules the proxy refuses are never loaded. ./lego is not committed.
module deprovisioner.dev/ingress

go 1.26.0

require github.com/traefik/traefik/v3 v3.7.13

require deprovisioner.dev/upstream/go-http-auth v0.4.0 // indirect

replace github.com/traefik/traefik/dynamic/ext => ./ext

replace github.com/abbot/go-http-auth => ./goauth

// Upstream go-http-auth v0.4.0 as the proxy serves it (go.sum pins it), under a path of its own
// so that ./goauth, which takes its place, can import it.
replace deprovisioner.dev/upstream/go-http-auth => github.com/abbot/go-http-auth v0.4.0

replace github.com/go-acme/lego/v5 => ./lego

// Traefik's own go.mod replaces gorilla/mux with its fork; a dependency's replacements do not
// apply to the module that requires it, so it is repeated here.
replace github.com/gorilla/mux => github.com/containous/mux v0.0.0-20250523120546-41b6ec3aed59

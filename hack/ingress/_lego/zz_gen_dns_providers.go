// Replaces lego v5.4.1's providers/dns/zz_gen_dns_providers.go, which imports every ACME DNS
// provider, in the copy of lego that scripts/control-plane build --ingress makes (hack/ingress):
// no DNS challenge is used here, and the module proxy refuses or lacks several providers' modules.
package dns

import (
	"fmt"

	"github.com/go-acme/lego/v5/challenge"
)

// NewDNSChallengeProviderByName supports no provider in this build.
func NewDNSChallengeProviderByName(name string) (challenge.Provider, error) {
	return nil, fmt.Errorf("unrecognized DNS provider: %s (this build has no DNS providers)", name)
}

# shellcheck shell=bash
# The test node of scripts/control-plane (sourced by it): `up --node DIR` adds to the control
# plane one real node on this machine, whose pods run under kubelet and containerd:
#
#   containerd (Debian's, its own config, socket, root and state under DIR/node) with runc
#   kubelet            registers node "deprovisioner-node", cgroupfs driver (cgroup v1 works)
#   kube-controller-manager, kube-scheduler   (Deployments become pods; ServiceAccounts, tokens)
#   kube-proxy         iptables mode: a Service's ClusterIP answers on this machine and in pods
#   a bridge network   bridge dpnode0, pods in 10.244.0.0/24, the node (and API server) at 10.244.0.1
#   dnsmasq            Service names (NAME.NS.svc.cluster.local) for pods, at 10.244.0.1:53
#   Traefik            the ingress controller (hack/ingress), on this machine outside the cluster with
#                      the admin kubeconfig: it serves Ingresses of class `traefik` (an IngressClass
#                      up creates) over https on 127.0.0.1 (the port in DIR/node/ingress.addr), routing
#                      to the pods' addresses on the bridge
#
# Every component authenticates with the admin certificate (no Node authorizer): a test node.
# Images cannot be pulled (no registry is reachable): the pause image and the helm test's client
# are built here (hack/node) and imported; tests import the operator's (scripts/oci-image).
# One node per machine (fixed bridge, addresses and ports); `down DIR` removes it all: pods,
# containers, mounts, network namespaces, kube-proxy's iptables rules, the bridge, cgroups.

NODE_NAME=deprovisioner-node
NODE_BRIDGE=dpnode0
NODE_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
NODE_CLAIM=/run/deprovisioner-node
PAUSE_IMAGE=localhost/deprovisioner-node/pause:1
WGET_IMAGE=localhost/deprovisioner-node/wget:1
# Kernel settings the node changes, saved by up and restored by down.
NODE_SYSCTLS=(net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/ipv4/conf/all/route_localnet
  vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys
  kernel/keys/root_maxbytes)
nodesrc="$here/hack/node"
# containerd, kube-proxy and kubelet run iptables, mount, ip… from the PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
nodedir="$cache/node-$K8S_VERSION-$(cat "$nodesrc/go.sum" "$nodesrc/pause/main.go" "$nodesrc/wget/main.go" | sha256sum | cut -c1-12)"
# The images written from those binaries, by this version of scripts/oci-image.
imagekey=$(sha256sum "$here/scripts/oci-image" | cut -c1-12)
# The ingress controller: Traefik's own command, built from hack/ingress (see its README.md) with
# lego (Traefik's ACME library) copied in without its DNS providers, checked against this hash.
# Its cache key covers every input: hack/ingress's files, lego's version and hash, and the steps
# of build_ingress below (read from this file).
TRAEFIK_VERSION=v3.7.13
LEGO_VERSION=v5.4.1
LEGO_SUM=h1:Jt6xAP9xQrJ3SLLGgxejfDDd3pzdrmuLCWe4oTqHHQc=
ingresssrc="$here/hack/ingress"
ingressdir="$cache/ingress-traefik-$TRAEFIK_VERSION-$( (cd "$ingresssrc" && find . -type f ! -name '*.md' | LC_ALL=C sort | xargs sha256sum
  echo "$LEGO_VERSION $LEGO_SUM"; sed -n '/^build_ingress() {$/,/^}$/p' "$here/scripts/node.sh") | sha256sum | cut -c1-12)"
INGRESS_CLASS=traefik

# What `up --node` needs from Debian, by command (or file) and package.
NODE_NEEDS=(containerd:containerd runc:runc ctr:containerd /usr/lib/cni/bridge:containernetworking-plugins
  iptables:iptables conntrack:conntrack dnsmasq:dnsmasq-base ip:iproute2 mount:mount)

node_missing() {
  local need missing=()
  for need in "${NODE_NEEDS[@]}"; do
    local what=${need%%:*} pkg=${need#*:}
    case "$what" in
      /*) [ -e "$what" ] || missing+=("$pkg") ;;
      *) command -v "$what" >/dev/null || [ -x "/usr/sbin/$what" ] || missing+=("$pkg") ;;
    esac
  done
  echo "${missing[@]:-}" | tr ' ' '\n' | sort -u | tr '\n' ' ' | sed 's/ *$//'
}

# Debian's packages the node runs on, installed when missing (root and apt-get needed).
node_packages() {
  local missing; missing=$(node_missing)
  [ -n "$missing" ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $missing (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    log "the node needs Debian's $missing (not root, or no apt-get: install them)"; return 1
  fi
}

build_node() {
  build
  node_packages || true
  build_ingress
  mkdir -p "$nodedir"
  local b pkgs=() names=()
  for b in kubelet kube-controller-manager kube-scheduler kube-proxy; do
    [ -x "$nodedir/$b" ] || { pkgs+=("k8s.io/kubernetes/cmd/$b"); names+=("$b"); }
  done
  for b in pause wget; do [ -x "$nodedir/$b" ] || { pkgs+=("./$b"); names+=("$b"); }; done
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "building ${names[*]} ($K8S_VERSION) into $nodedir (a cold build takes many minutes)"
    local tmp; tmp=$(mktemp -d "$nodedir/.build.XXXXXX")
    (cd "$nodesrc" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$(k8s_ldflags)" -o "$tmp/" "${pkgs[@]}")
    mv "$tmp"/* "$nodedir/" && rmdir "$tmp"
  fi
  [ -f "$nodedir/pause-$imagekey.tar" ] || "$here/scripts/oci-image" static "$nodedir/pause" /pause "$PAUSE_IMAGE" "$nodedir/pause-$imagekey.tar"
  [ -f "$nodedir/wget-$imagekey.tar" ] || "$here/scripts/oci-image" static "$nodedir/wget" /bin/wget "$WGET_IMAGE" "$nodedir/wget-$imagekey.tar"
  log "node binaries ready in $nodedir"
}

build_ingress() {
  if [ ! -x "$ingressdir/traefik" ]; then
    grep -q "^require github.com/traefik/traefik/v3 $TRAEFIK_VERSION\$" "$ingresssrc/go.mod" \
      || { log "hack/ingress/go.mod does not require Traefik $TRAEFIK_VERSION"; return 1; }
    log "building Traefik $TRAEFIK_VERSION (hack/ingress) into $ingressdir (a cold build takes many minutes)"
    mkdir -p "$ingressdir"
    local tmp; tmp=$(mktemp -d "$ingressdir/.build.XXXXXX")
    cp -r "$ingresssrc" "$tmp/src"
    local lego
    lego=$(cd "$tmp/src" && go mod download -json "github.com/go-acme/lego/v5@$LEGO_VERSION" \
      | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m.get("Sum",""), m.get("Dir",""), m.get("Error",""))')
    if [ "${lego%% *}" != "$LEGO_SUM" ]; then
      log "lego $LEGO_VERSION: not the expected module ($lego)"; rm -rf "$tmp"; return 1
    fi
    cp -r "$(echo "$lego" | cut -d' ' -f2)" "$tmp/src/lego"
    chmod -R u+w "$tmp/src/lego"
    cp "$ingresssrc/_lego/zz_gen_dns_providers.go" "$tmp/src/lego/providers/dns/"
    rm -f "$tmp/src/lego/providers/dns/dns_providers_test.go"
    # Our go-http-auth module (hack/ingress/goauth) is tested before Traefik is built on it.
    (cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go test -count=1 github.com/abbot/go-http-auth) \
      || { log "hack/ingress/goauth: its tests fail"; rm -rf "$tmp"; return 1; }
    (cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
      -o "$tmp/traefik" github.com/traefik/traefik/v3/cmd/traefik) || { rm -rf "$tmp"; return 1; }
    mv "$tmp/traefik" "$ingressdir/traefik" && rm -rf "$tmp"
  fi
  log "ingress controller ready: $ingressdir/traefik"
}

# Exits 3, saying why, when this machine cannot run the node (a test then skips with that reason).
node_preflight() {
  local why=""
  if [ "$(id -u)" != 0 ]; then why="the node needs root (containerd, mounts, network namespaces, iptables)"
  elif [ -n "$(node_missing)" ]; then why="Debian's $(node_missing) are missing (scripts/control-plane build --node installs them)"
  elif [ ! -d /sys/fs/cgroup/memory ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then why="no cgroup memory controller is mounted"
  elif ! ip link add dpnode-probe type bridge 2>/dev/null; then why="cannot create a network bridge here (CAP_NET_ADMIN)"
  else
    ip link del dpnode-probe 2>/dev/null || true
    local other="" owner="" i
    read -r other owner 2>/dev/null < "$NODE_CLAIM" || true
    # A node whose owner (a test process) has exited is being torn down: wait for that.
    if [ -n "$other" ] && [ -n "${owner:-}" ] && ! kill -0 "$owner" 2>/dev/null; then
      for i in $(seq 1 120); do [ -f "$NODE_CLAIM" ] || break; sleep 0.5; done
      read -r other owner 2>/dev/null < "$NODE_CLAIM" || other=""
    fi
    if [ -n "$other" ] && [ -f "$other/node/kubelet.pid" ] && kill -0 "$(cat "$other/node/kubelet.pid")" 2>/dev/null; then
      why="another test node runs on this machine (state in $other); one at a time"
    fi
  fi
  if [ -n "$why" ]; then echo "control-plane: cannot run a node here: $why" >&2; exit 3; fi
}

# Marks DIR as this machine's node, and makes the bridge the API server will listen on.
node_claim() {
  local dir=$1
  echo "$dir ${DEPROVISIONER_OWNER_PID:-}" > "$NODE_CLAIM"
  mkdir -p "$dir/node"
  # What down restores: the settings this node changes (ip_forward, bridge-nf-call-iptables here;
  # kubelet sets vm.overcommit_memory, kernel.panic, kernel.panic_on_oops… as it starts).
  local k
  for k in "${NODE_SYSCTLS[@]}"; do
    [ ! -f "/proc/sys/$k" ] || echo "$k=$(cat "/proc/sys/$k")"
  done > "$dir/node/sysctl.saved"
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  ip addr replace "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  echo 1 > /proc/sys/net/ipv4/ip_forward
  # A pod calling a Service whose endpoint is a pod on the same bridge: its packets must pass
  # iptables (kube-proxy's DNAT) on the bridge too.
  [ ! -f /proc/sys/net/bridge/bridge-nf-call-iptables ] || echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
}

node_api_sans() {
  echo "IP:$NODE_IP,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
}

node_api_flags() {
  local dir=$1
  # kubectl logs/exec: the API server calls kubelet at the node's address (its name resolves nowhere).
  echo "--kubelet-client-certificate $dir/pki/admin.crt --kubelet-client-key $dir/pki/admin.key --kubelet-preferred-address-types InternalIP"
}

node_sock() { echo "$1/node/containerd/containerd.sock"; }
node_ctr() { local dir=$1; shift; ctr -a "$(node_sock "$dir")" -n k8s.io "$@"; }

# SIGKILL to a container's process (tests: a leader that dies without releasing its Lease).
node_kill() {
  local dir; dir=$(cd "$1" && pwd)
  node_ctr "$dir" tasks kill -s SIGKILL "$2"
}

node_import() {
  local dir; dir=$(cd "$1" && pwd)
  node_ctr "$dir" images import "$2" >&2
}

# Starts a node component in its own session; its pid goes to DIR/node/NAME.pid.
node_start() {
  local dir=$1 name=$2; shift 2
  setsid "$@" >"$dir/node/$name.log" 2>&1 < /dev/null &
  echo $! > "$dir/node/$name.pid"
}

node_up() {
  local dir=$1 n=$dir/node started=$SECONDS
  mkdir -p "$n/containerd" "$n/cni/net.d" "$n/cni/ipam" "$n/kubelet" "$n/dns"
  cat > "$n/containerd/config.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$n/containerd/containerd.sock"
[ttrpc]
  address = "$n/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$n/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # runc may not write oom_score_adj here (no CAP_SYS_RESOURCE): without this every sandbox
  # fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  enable_selinux = false
  # Pods' network namespaces under DIR too (not /var/run/netns), so down finds every one.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni/net.d"
EOF
  # No ipMasq: nothing leaves the machine, and no per-pod iptables chains to leave behind.
  cat > "$n/cni/net.d/10-deprovisioner-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "deprovisioner-node",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$n/cni/ipam",
              "ranges": [[{"subnet": "$NODE_CIDR", "gateway": "$NODE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}}
  ]
}
EOF
  node_start "$dir" containerd containerd --config "$n/containerd/config.toml" --log-level warn
  local i
  for i in $(seq 1 100); do [ -S "$(node_sock "$dir")" ] && break; sleep 0.1; done
  [ -S "$(node_sock "$dir")" ] || { log "containerd did not start"; tail -20 "$n/containerd.log" >&2; return 1; }
  node_import "$dir" "$nodedir/pause-$imagekey.tar" && node_import "$dir" "$nodedir/wget-$imagekey.tar" || return 1

  cat > "$n/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine: cgroup v1, no CAP_SYS_RESOURCE.
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
failSwapOn: false
containerRuntimeEndpoint: unix://$(node_sock "$dir")
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: AlwaysAllow}
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: $n/dns/resolv.conf
podLogsDir: $n/pod-logs
# The images are imported, never pulled: never collect them, and no eviction for a full disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 10s
serializeImagePulls: false
EOF
  # Pods' resolv.conf: the node's resolver only (nothing outside the machine answers).
  echo "nameserver $NODE_IP" > "$n/dns/resolv.conf"
  node_start "$dir" kubelet "$nodedir/kubelet" --config "$n/kubelet/config.yaml" \
    --kubeconfig "$dir/kubeconfig" --root-dir "$n/kubelet" --cert-dir "$n/kubelet/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  node_start "$dir" kube-controller-manager "$nodedir/kube-controller-manager" --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --use-service-account-credentials=false \
    --node-monitor-grace-period 20s
  node_start "$dir" kube-scheduler "$nodedir/kube-scheduler" --kubeconfig "$dir/kubeconfig" \
    --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
  cat > "$n/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack settings as they are, and no NodePorts on 127.0.0.1 (which would
# set route_localnet for the whole machine).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
  node_start "$dir" kube-proxy "$nodedir/kube-proxy" --config "$n/kube-proxy.yaml"
  # Service names: dnsmasq answers cluster.local from a hosts file kept from the Services.
  : > "$n/dns/hosts"
  node_start "$dir" dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --user=root \
    --listen-address "$NODE_IP" --bind-interfaces --addn-hosts "$n/dns/hosts" --local /cluster.local/ \
    --pid-file= --log-facility=-
  # The first SIGHUP waits until dnsmasq listens: sent before it has set its handlers, the signal
  # ends it (seen once in `make test`: "dnsmasq exited").
  node_start "$dir" dns-sync bash -c '
    kubectl=$1 kc=$2 hosts=$3 dnsmasq_pid=$4 ip=$5
    for i in $(seq 1 300); do
      (exec 3<>"/dev/tcp/$ip/53") 2>/dev/null && break
      kill -0 "$dnsmasq_pid" 2>/dev/null || exit 0
      [ "$i" -lt 300 ] || { echo "dnsmasq did not listen on $ip:53 within 30 s; not syncing Service names" >&2; exit 1; }
      sleep 0.1
    done
    while kill -0 "$dnsmasq_pid" 2>/dev/null; do
      "$kubectl" --kubeconfig "$kc" get services -A -o jsonpath="{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}.svc.cluster.local{\"\\n\"}{end}" \
        2>/dev/null | grep -v -e "^None " -e "^ " > "$hosts.new" || true
      if ! cmp -s "$hosts.new" "$hosts"; then mv "$hosts.new" "$hosts"; kill -HUP "$dnsmasq_pid"; fi
      sleep 1
    done' _ "$bindir/kubectl" "$dir/kubeconfig" "$n/dns/hosts" "$(cat "$n/dnsmasq.pid")" "$NODE_IP"

  # The ingress controller, as a cluster's would run, but on this machine: Traefik's Kubernetes
  # Ingress provider with the admin kubeconfig, one https entrypoint on 127.0.0.1 (every router
  # on it terminates TLS with the certificate of the Ingress's tls Secret), routing to the pods.
  local kc=(--kubeconfig "$dir/kubeconfig") ingress_port
  printf 'apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: %s}\nspec: {controller: traefik.io/ingress-controller}\n' \
    "$INGRESS_CLASS" | "$bindir/kubectl" "${kc[@]}" apply -f - >/dev/null \
    || { log "could not create the IngressClass $INGRESS_CLASS"; return 1; }
  ingress_port=$(free_port)
  node_start "$dir" ingress env KUBECONFIG="$dir/kubeconfig" "$ingressdir/traefik" \
    --global.checkNewVersion=false --global.sendAnonymousUsage=false --log.level=INFO --log.noColor=true \
    --accessLog=true --accessLog.filePath="$n/ingress-access.log" \
    --entryPoints.websecure.address="127.0.0.1:$ingress_port" --entryPoints.websecure.http.tls=true \
    --providers.kubernetesIngress=true --providers.kubernetesIngress.ingressClass="$INGRESS_CLASS"
  echo "127.0.0.1:$ingress_port" > "$n/ingress.addr"

  # Ready: the node reports Ready (its runtime and network are), the default ServiceAccount
  # exists (pods are refused without it), and the ingress controller listens.
  for i in $(seq 1 1200); do
    if [ "$("$bindir/kubectl" "${kc[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] \
       && "$bindir/kubectl" "${kc[@]}" -n default get serviceaccount default >/dev/null 2>&1 \
       && (exec 3<>"/dev/tcp/127.0.0.1/$ingress_port") 2>/dev/null; then
      log "node $NODE_NAME Ready after $((SECONDS - started)) s; Ingresses of class $INGRESS_CLASS served at https://127.0.0.1:$ingress_port (logs in $n)"
      return 0
    fi
    local p
    for p in containerd kubelet kube-controller-manager kube-scheduler kube-proxy dnsmasq ingress; do
      if ! kill -0 "$(cat "$n/$p.pid")" 2>/dev/null; then
        log "$p exited; last lines of $n/$p.log:"; tail -20 "$n/$p.log" >&2; return 1
      fi
    done
    sleep 0.1
  done
  log "node not Ready after 120 s; last lines of $n/kubelet.log:"; tail -30 "$n/kubelet.log" >&2
  return 1
}

node_stop() {
  local dir=$1 name=$2 pid
  [ -f "$dir/node/$name.pid" ] || return 0
  pid=$(cat "$dir/node/$name.pid")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$dir/node/$name.pid"
}

# Mount points under a path, deepest first.
node_mounts_under() {
  awk -v p="$1" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo | sort -r -u
}

# What kube-proxy's --cleanup leaves: kubelet's chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY,
# KUBE-IPTABLES-HINT) and the rules that jump to them. Only the node makes KUBE-* chains here.
node_iptables_cleanup() {
  local ipt t rule chain
  for ipt in iptables ip6tables; do
    for t in mangle nat filter; do
      "$ipt" -t "$t" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | while read -r rule; do
        eval "\"\$ipt\" -t \"\$t\" -D ${rule#-A }" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

node_down() {
  local dir=$1 n=$1/node
  local kc=(--kubeconfig "$dir/kubeconfig")
  node_stop "$dir" ingress
  # Nothing new is scheduled; kubelet stops every pod (CNI teardown, network namespace removal).
  node_stop "$dir" kube-controller-manager
  node_stop "$dir" kube-scheduler
  if [ -f "$n/kubelet.pid" ] && kill -0 "$(cat "$n/kubelet.pid")" 2>/dev/null; then
    "$bindir/kubectl" "${kc[@]}" delete pods -A --all --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    for _ in $(seq 1 300); do
      [ -z "$(node_ctr "$dir" tasks ls -q 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  node_stop "$dir" kubelet
  node_stop "$dir" dns-sync
  node_stop "$dir" dnsmasq
  node_stop "$dir" kube-proxy
  "$nodedir/kube-proxy" --cleanup >/dev/null 2>&1 || true
  node_iptables_cleanup
  # What kubelet left: kill every task, note each container's network namespace, remove them.
  local netns=() id t
  if [ -S "$(node_sock "$dir")" ]; then
    for t in $(node_ctr "$dir" tasks ls -q 2>/dev/null); do node_ctr "$dir" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    for _ in $(seq 1 50); do
      [ -z "$(node_ctr "$dir" tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"')" ] && break
      sleep 0.1
    done
    for id in $(node_ctr "$dir" containers ls -q 2>/dev/null); do
      netns+=($(node_ctr "$dir" containers info "$id" 2>/dev/null \
        | python3 -c 'import json,sys; [print(n["path"]) for n in json.load(sys.stdin).get("Spec",{}).get("linux",{}).get("namespaces",[]) if n.get("type")=="network" and n.get("path")]' 2>/dev/null || true))
      node_ctr "$dir" tasks delete -f "$id" >/dev/null 2>&1 || true
      node_ctr "$dir" containers delete "$id" >/dev/null 2>&1 || true
    done
  fi
  node_stop "$dir" containerd
  # Shims of this containerd outlive it: they name its state directory on their command line.
  local pid
  for pid in $(grep -lsF -- "$n/containerd" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$pid" != $$ ] && kill -KILL "$pid" 2>/dev/null || true
  done
  local ns
  for ns in "${netns[@]}"; do
    [ -e "$ns" ] || continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  local m
  for m in $(node_mounts_under "$dir"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  # Pod cgroups (kubelet makes kubepods/ in every v1 hierarchy, or in the unified one).
  local cg
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  if [ -f "$n/sysctl.saved" ]; then
    local key value
    while IFS== read -r key value; do
      [ -z "$key" ] || echo "$value" > "/proc/sys/$key" 2>/dev/null || log "could not restore $key=$value"
    done < "$n/sysctl.saved"
  fi
  local claimed; read -r claimed _ 2>/dev/null < "$NODE_CLAIM" || true
  [ "${claimed:-}" != "$dir" ] || rm -f "$NODE_CLAIM"
  if [ -n "$(node_mounts_under "$dir")" ]; then
    log "mounts remain under $dir; not removing it:"; node_mounts_under "$dir" >&2
    return 1
  fi
}

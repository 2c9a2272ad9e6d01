#!/usr/bin/env bash
# Herald's main job, end to end on one machine (as root): the lab -- a
# 3-node Kubernetes cluster in network namespaces with a real control plane and real nodes
# -- with Herald installed from its Helm chart (Talos preset), then the
# tutorial, literally: pool, policy, nginx, `kubectl expose`, EXTERNAL-IP
# 192.168.10.75 and `curl` from a LAN client; then the traffic-policy part
# with agnhost's /clientip. Every step checks what it shows. The lab stays
# up for you to explore; `bin/herald-lab down` removes it.
#
#   hack/lab.sh
#
# HERALD_LAB_DIR and HERALD_LAB_PREFIX choose the lab's state directory and
# namespace prefix (defaults /var/lib/herald-lab and hl-).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then echo "hack/lab.sh needs root (network namespaces)"; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in make:make ip:iproute2 curl:curl arp:net-tools nft:nftables \
	/usr/sbin/runc:runc /usr/lib/cni/bridge:containernetworking-plugins iptables:iptables; do
	command -v "${pkg%%:*}" >/dev/null 2>&1 || need+=("${pkg#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq "${need[@]}"
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH=/usr/local/go/bin:$PATH; fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
# bin/herald-lab runs the lab; bin/herald, next to it, is Herald's image.
herald_lab=$PWD/bin/herald-lab
lab() { "$herald_lab" "$@"; }
kubectl() { "$herald_lab" kubectl "$@"; }
client() { "$herald_lab" client -- "$@"; }
# wait_for DESCRIPTION TRIES COMMAND...: retry a check every 0.2 s.
wait_for() {
	local what=$1 tries=$2; shift 2
	for _ in $(seq 1 "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
	fail "$what"
}

step "Building herald and herald-lab"
make -s build

step "Bringing up the lab and installing Herald with its Helm chart (Talos preset)"
run lab up

# A second run starts the tutorial over in the running lab.
kubectl delete service nginx echo --ignore-not-found >/dev/null
kubectl delete deployment nginx echo --ignore-not-found --wait >/dev/null
kubectl delete lbpool first-pool --ignore-not-found >/dev/null
kubectl delete l2announcementpolicy default-policy --ignore-not-found >/dev/null

step "1. A pool of addresses and an L2 announcement policy"
run kubectl apply -f examples/pool.yaml
run kubectl apply -f examples/l2policy.yaml
pool_ready() { [ "$(kubectl get lbpool first-pool -o jsonpath='{.status.conditions[?(@.type=="IPsAvailable")].message}')" = 4 ]; }
wait_for "the pool does not report 4 available addresses" 50 pool_ready
run kubectl get lbpool

step "2. nginx, exposed as a LoadBalancer Service"
run kubectl create deployment nginx --image=nginx:latest
run kubectl rollout status deployment/nginx --timeout=2m
run kubectl expose deployment nginx --type=LoadBalancer --port=80
has_ip() { [ "$(kubectl get svc nginx -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" = "$1" ]; }
wait_for "nginx did not get EXTERNAL-IP 192.168.10.75" 50 has_ip 192.168.10.75
run kubectl get svc nginx

step "3. From a machine on the LAN: curl the address"
welcome() { client curl -sS --max-time 2 http://192.168.10.75 | grep -q 'Welcome to nginx!'; }
wait_for "curl http://192.168.10.75 from the client did not return the nginx page" 50 welcome
echo '$ client curl -sS http://192.168.10.75 | grep title'
client curl -sS http://192.168.10.75 | grep '<title>'
run client arp -n 192.168.10.75
run kubectl get svc nginx -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

step "4. Traffic policy: who does the backend see? (agnhost netexec /clientip)"
run kubectl create deployment echo --image=registry.k8s.io/e2e-test-images/agnhost:2.66.1 -- /agnhost netexec --http-port=8080
run kubectl rollout status deployment/echo --timeout=2m
run kubectl expose deployment echo --type=LoadBalancer --port=80 --target-port=8080
echo_ip() { kubectl get svc echo -o jsonpath='{.status.loadBalancer.ingress[0].ip}'; }
got_echo_ip() { [ -n "$(echo_ip)" ]; }
wait_for "echo did not get an EXTERNAL-IP" 50 got_echo_ip
ip=$(echo_ip)
clientip() { client curl -sS --max-time 2 "http://$ip/clientip"; }
wait_for "curl http://$ip/clientip failed" 50 clientip
seen=$(clientip)
echo "externalTrafficPolicy=Cluster: the backend sees $seen (the announcing node's address: it masquerades)"
case "$seen" in 192.168.10.10:*) fail "with Cluster the backend should see a node, not the client";; esac
run kubectl patch svc echo -p '{"spec":{"externalTrafficPolicy":"Local"}}'
sees_client() { clientip | grep -q '^192\.168\.10\.10:'; }
wait_for "with Local, /clientip did not return the client's own address" 50 sees_client
seen=$(clientip)
echo "externalTrafficPolicy=Local: the backend sees $seen (the LAN client's own address)"
pod_node=$(kubectl get pods -l app=echo -o jsonpath='{.items[0].spec.nodeName}')
announced_by() { kubectl get svc echo -o jsonpath='{.status.conditions[?(@.type=="herald.dev/Announced")].message}' | grep -q "announced by node $1 "; }
wait_for "with Local, the announcing node is not $pod_node, the node of the only echo Pod" 50 announced_by "$pod_node"
run kubectl get svc echo -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
echo "The echo Pod runs on $pod_node, and $pod_node announces: with Local only a node with a ready local"
echo "endpoint may announce, so the \"Local gotcha\" (an announcing node that drops the traffic) cannot happen."

step "Done. The lab stays up; explore it:"
cat <<'TXT'
  bin/herald-lab status
  bin/herald-lab client -- arp -n
  bin/herald-lab client -- curl http://192.168.10.75
  bin/herald-lab kubectl get leases -A
  bin/herald-lab node cp1 -- nft list ruleset
  bin/herald-lab down
TXT

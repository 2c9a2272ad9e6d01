#!/usr/bin/env bash
# Herald's LB-IPAM quickstart, end to end on one machine: a real etcd and
# kube-apiserver (built from pinned modules, cached), Herald's CRDs, the
# herald controller, the tutorial's pool, and LoadBalancer Services getting
# their EXTERNAL-IP -- and one that cannot, saying why.
#
# Until the lab (3 nodes in network namespaces, ARP answers, curl) lands,
# this is Herald's main job. Nothing here touches the network: the API
# server listens on 127.0.0.1 only.
#
#   hack/quickstart.sh          # run the walk-through, then tear down
#   KEEP=1 hack/quickstart.sh   # leave the cluster and controller running
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/herald-quickstart.XXXXXX)
export KUBECONFIG=$work/kubeconfig
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
if [ "${KEEP:-}" != 1 ]; then trap cleanup EXIT; fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Building herald and the pinned control plane (cached after the first run)"
make -s build
go build -o "$work/devcluster" ./hack/devcluster
KUBECTL_DIR=$(go run ./internal/testenv/cmd/buildtools | tail -n1)
export PATH=$KUBECTL_DIR:$PWD/bin:$PATH

step "Starting etcd + kube-apiserver with Herald's CRDs"
"$work/devcluster" -kubeconfig "$KUBECONFIG" >"$work/devcluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
	[ -s "$KUBECONFIG" ] && break
	kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/devcluster.log"; exit 1; }
	sleep 0.2
done
[ -s "$KUBECONFIG" ] || { echo "API server did not come up"; cat "$work/devcluster.log"; exit 1; }
run kubectl version
run kubectl create namespace herald-system

step "Running the herald controller (leader election on a Lease in herald-system)"
herald controller --kubeconfig "$KUBECONFIG" --metrics-addr 127.0.0.1:0 >"$work/controller.log" 2>&1 &
pids+=($!)

step "Creating the tutorial's pool"
run cat examples/pool.yaml
run kubectl apply -f examples/pool.yaml
for _ in $(seq 1 100); do
	[ "$(kubectl get lbpool first-pool -o jsonpath='{.status.conditions[?(@.type=="IPsAvailable")].message}')" = 4 ] && break
	sleep 0.1
done
run kubectl get lbpool

step "Exposing nginx as a LoadBalancer Service"
run kubectl create deployment nginx --image=nginx:latest
run kubectl expose deployment nginx --type=LoadBalancer --port=80
for _ in $(seq 1 100); do
	ip=$(kubectl get svc nginx -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
	[ -n "$ip" ] && break
	sleep 0.1
done
run kubectl get svc nginx
[ "$ip" = 192.168.10.75 ] || { echo "expected EXTERNAL-IP 192.168.10.75, got '$ip'"; cat "$work/controller.log"; exit 1; }
run kubectl get svc nginx -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

step "Asking for more addresses than the pool has: the fifth Service stays <pending> and says why"
for i in 2 3 4 5; do kubectl create service loadbalancer "web$i" --tcp=80:80 >/dev/null; done
for _ in $(seq 1 100); do
	reason=$(kubectl get svc web5 -o jsonpath='{.status.conditions[?(@.type=="herald.dev/IPAllocated")].reason}')
	[ -n "$reason" ] && break
	sleep 0.1
done
run kubectl get svc
run kubectl get svc web5 -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'
run kubectl get events --field-selector involvedObject.name=web5
[ "$reason" = OutOfIPs ] || { echo "expected web5 to be OutOfIPs, got '$reason'"; exit 1; }
run kubectl get lbpool

step "Releasing nginx's address: the waiting Service gets it"
run kubectl delete svc nginx
for _ in $(seq 1 100); do
	ip=$(kubectl get svc web5 -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
	[ -n "$ip" ] && break
	sleep 0.1
done
run kubectl get svc web5
[ "$ip" = 192.168.10.75 ] || { echo "expected web5 to get 192.168.10.75, got '$ip'"; exit 1; }

step "Done"
if [ "${KEEP:-}" = 1 ]; then
	echo "Left running: export KUBECONFIG=$KUBECONFIG PATH=$KUBECTL_DIR:\$PATH; stop with: kill ${pids[*]}"
fi

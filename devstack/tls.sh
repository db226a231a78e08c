# shellcheck shell=bash
# devstack/tls.sh - TLS certificates of the local data stack (Kafka's and
# Mosquitto's TLS listeners), issued with openssl under one "DeviceFleet dev
# CA" in $DEVSTACK_STATE/tls (TLS_DIR). Sourced by components after lib.sh.
#
# Reuses devstack/k8s/pki.sh's idempotent issuing (a cert is re-issued only
# when missing, its spec changed, it expires within 30 days, or the CA was
# re-made) with a separate CA: a client that trusts the data stack's CA must
# not trust the Kubernetes control plane, and vice versa.
#
#   tls_ca                    TLS_DIR/ca.{crt,key} (made once)
#   tls_server_cert NAME SAN  TLS_DIR/NAME.{crt,key}, serverAuth, SAN like
#                             "DNS:localhost,IP:127.0.0.1"
#   tls_client_cert NAME CN   TLS_DIR/NAME.{crt,key}, clientAuth (mTLS)
#
# Clients (tests, services) trust TLS_DIR/ca.crt.

# shellcheck source=k8s/pki.sh
source "$DEVSTACK_DIR/k8s/pki.sh"

TLS_DIR="$DEVSTACK_STATE/tls"

tls_ca() {
  local K8S_PKI="$TLS_DIR" # pki.sh's functions write under K8S_PKI
  mkdir -p "$TLS_DIR"
  _pki_ca ca "DeviceFleet dev CA"
}

tls_server_cert() {
  local name="$1" san="$2" K8S_PKI="$TLS_DIR"
  tls_ca
  _pki_cert "$name" ca "/CN=$name" serverAuth "$san"
}

tls_client_cert() {
  local name="$1" cn="$2" K8S_PKI="$TLS_DIR"
  tls_ca
  _pki_cert "$name" ca "/CN=$cn" clientAuth
}

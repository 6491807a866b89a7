#!/usr/bin/env bash
# Validates the Kubernetes manifests in Cluster/k8s against the Kubernetes JSON schema
# (PyPI kubernetes-validate, which ships the schemas: no cluster, no network beyond PyPI),
# strict (unknown fields are errors), for each version in KILN_K8S_VERSIONS; checks that
# kustomization.yaml lists every manifest and only existing files, and that every `kiln`
# option the containers pass is one `kiln COMMAND --help` knows. Then proves the checks
# bite: broken copies in a temporary directory must each be rejected.
#
#   Ops/k8s-validate.sh
#
# Environment: KILN_K8S_VENV (default ~/.cache/kiln/venv-k8s-validate, outside git),
# KILN_K8S_VERSIONS (default "1.30.0 1.37.0"), KILN_BIN (default the repo's
# .build/release/kiln).
set -euo pipefail

me="k8s-validate.sh"
die() { echo "$me: $*" >&2; exit 1; }
[[ $# -eq 0 ]] || { echo "usage: Ops/k8s-validate.sh" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
k8s=$root/Cluster/k8s
venv=${KILN_K8S_VENV:-$HOME/.cache/kiln/venv-k8s-validate}
versions=${KILN_K8S_VERSIONS:-1.30.0 1.37.0}
bin=${KILN_BIN:-$root/.build/release/kiln}
pin=1.37.0
[[ -x $bin ]] || die "no kiln binary at $bin (swift build -c release, or set KILN_BIN)"
[[ -f $k8s/kustomization.yaml ]] || die "$k8s/kustomization.yaml missing"

if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qF "$pin"; then
  python3 -m venv "$venv" || die "cannot create a venv at $venv (apt-get install python3-venv?)"
  "$venv/bin/pip" install --quiet "kubernetes-validate==$pin" || die "pip install kubernetes-validate==$pin failed"
fi

# Checks one manifest directory (Cluster/k8s or a broken copy); prints what is wrong and
# returns non-zero if anything is.
check_dir() {
  local dir=$1 bad=0 v out
  local -a files
  mapfile -t files < <(cd "$dir" && find . -name '*.yaml' ! -name kustomization.yaml | sort)
  ((${#files[@]})) || { echo "no manifests in $dir"; return 1; }
  for v in $versions; do
    # --quiet prints only warnings and errors; a warning (such as an unknown kind) fails too.
    out=$(cd "$dir" && "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "${files[@]}" 2>&1) || bad=1
    [[ -z $out ]] || { echo "$out"; bad=1; }
  done
  "$venv/bin/python" - "$dir" "$bin" <<'PY' || bad=1
import os
import re
import subprocess
import sys

import yaml

directory, kiln = sys.argv[1], sys.argv[2]
problems = []

# kustomization.yaml: its resources exist, and every manifest beside it is one of them.
path = os.path.join(directory, "kustomization.yaml")
with open(path) as f:
    kust = yaml.safe_load(f)
if kust.get("kind") != "Kustomization":
    problems.append(f"{path}: kind is {kust.get('kind')!r}, not Kustomization")
listed = kust.get("resources") or []
for r in listed:
    if not os.path.isfile(os.path.join(directory, r)):
        problems.append(f"{path}: resource {r} does not exist")
for name in sorted(os.listdir(directory)):
    if name.endswith(".yaml") and name != "kustomization.yaml" and name not in listed:
        problems.append(f"{path}: {name} is not listed in resources")

# Every kiln option in a container's args is one its command knows.
helps = {}
for root, _, names in os.walk(directory):
    for name in sorted(n for n in names if n.endswith(".yaml") and n != "kustomization.yaml"):
        file = os.path.join(root, name)
        with open(file) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []):
                if not (c.get("command") or [""])[0].endswith("/kiln"):
                    continue
                args = c.get("args") or []
                if not args:
                    problems.append(f"{file}: container {c['name']}: kiln without a command")
                    continue
                sub = args[0]
                if sub not in helps:
                    r = subprocess.run([kiln, sub, "--help"], capture_output=True, text=True)
                    helps[sub] = set(re.findall(r"--[a-z0-9-]+", r.stdout)) if r.returncode == 0 else None
                if helps[sub] is None:
                    problems.append(f"{file}: container {c['name']}: `kiln {sub}` is not a kiln command")
                    continue
                for a in args[1:]:
                    flag = a.split("=", 1)[0]
                    if flag.startswith("--") and flag not in helps[sub]:
                        problems.append(f"{file}: container {c['name']}: kiln {sub} has no option {flag}")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
  return "$bad"
}

echo "$me: Cluster/k8s against Kubernetes $versions (strict)"
if ! check_dir "$k8s"; then die "Cluster/k8s does not validate (above)"; fi

# The checks must catch mistakes: each broken copy must be rejected.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
broken=0
expect_rejected() {
  local what=$1 edit=$2
  rm -rf "$tmp/k8s" && cp -r "$k8s" "$tmp/k8s"
  (cd "$tmp/k8s" && eval "$edit")
  if check_dir "$tmp/k8s" >"$tmp/out" 2>&1; then
    echo "$me: NOT caught: $what" >&2
    broken=1
  else
    echo "$me: caught: $what: $(head -n 1 "$tmp/out")"
  fi
}
expect_rejected "a misspelt field" "sed -i 's/targetPort: router/targetPrt: router/' coordinator.yaml"
expect_rejected "a string where an integer belongs" "sed -i 's/replicas: 2/replicas: two/' workers.yaml"
expect_rejected "a missing required field" "sed -i '/^  serviceName:/d' coordinator.yaml"
expect_rejected "an unknown kind" "sed -i 's/^kind: Deployment/kind: Deploymnt/' workers.yaml"
expect_rejected "a manifest not in kustomization.yaml" "cp files-pvc.yaml extra.yaml"
expect_rejected "a resource that does not exist" "rm files-pvc.yaml"
expect_rejected "an option kiln does not have" "sed -i 's/--curve-secret=/--curve-secert=/' workers.yaml"
((broken == 0)) || die "a broken manifest passed the checks"
echo "$me: passed"

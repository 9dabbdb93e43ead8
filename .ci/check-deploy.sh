#!/usr/bin/env bash
# The deployment files, checked for real on a machine without a Docker engine:
#   1. hadolint on the Dockerfile;
#   2. the Kubernetes manifest against the Kubernetes schemas (kubernetes-validate --strict: an
#      unknown or misspelt field fails), then against the hardening policy (.ci/check-manifest.py);
#   3. the Dockerfile's build stage, run on exactly the files its COPY lines bring in after
#      .dockerignore, --locked and offline, reusing target/ (.ci/docker-build-stage.py); then the
#      image's ENTRYPOINT runs `check-config` on the configuration the image ships, as the image
#      would load it (its ENV, its copied config file);
#   4. `check-config` on the config.toml of the manifest's ConfigMap, with the Secret's files stood in.
# A configuration must be valid with no warnings. Needs hadolint and kubernetes-validate on PATH
# (.ci/run installs them from PyPI) and the test run's compiled dependencies in target/ (else the
# build stage compiles them, which is slower but still correct).
set -euo pipefail
cd "$(dirname "$0")/.."

manifest=deploy/kubernetes/voltage-webhooks.yaml
step() { printf -- '-- %s\n' "$*"; step_started=$SECONDS; }
done_step() { printf -- '   (%ss)\n' "$((SECONDS - step_started))"; }

expect_no_warnings() { # output of check-config
  grep -q 'configuration is valid (0 warnings)' <<<"$1" || { echo "check-config printed warnings or failed" >&2; return 1; }
}

step "hadolint Dockerfile"
hadolint --no-color Dockerfile
echo "hadolint: ok"
done_step

step "kubernetes-validate --strict $manifest"
kubernetes-validate --strict --quiet "$manifest"
echo "kubernetes-validate: ok"
python3 .ci/check-manifest.py policy "$manifest"
done_step

step "Dockerfile build stage (offline, --locked, reusing target/), then the image's check-config"
# The image's config takes its webhook secrets from these variables (docker run -e ...).
env_args=()
for name in $(grep -o 'env *= *"[A-Z0-9_]*"' deploy/docker/config.toml | grep -o '"[A-Z0-9_]*"' | tr -d '"'); do
  env_args+=(--env "$name=vltg_ci_stand_in_for_${name}_0123456789")
done
output=$(python3 .ci/docker-build-stage.py --target-dir target "${env_args[@]}" --run check-config) || {
  printf '%s\n' "$output"; exit 1; }
printf '%s\n' "$output"
expect_no_warnings "$output"
done_step

step "check-config on the config.toml of $manifest"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
config=$(python3 .ci/check-manifest.py extract-config "$manifest" "$scratch")
# The binary the build stage just built (the image's). DATABASE_URL comes from the Secret in the
# pod; check-config does not connect.
output=$(env -i PATH="$PATH" DATABASE_URL=postgres://ci-stand-in/voltage_webhooks \
  target/docker-build-stage/built/voltage-webhooks --config "$config" check-config 2>&1) || {
  printf '%s\n' "$output"; exit 1; }
printf '%s\n' "$output"
expect_no_warnings "$output"
done_step

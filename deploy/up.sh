#!/usr/bin/env bash
# Starts the compose cluster (deploy/docker-compose.yml), waits until every node
# passes its health check, copies the cluster CA out of the `tls` volume (made at
# the first start by the tls-init service) to deploy/client-profile.ca.pem, and
# writes the client profile deploy/client-profile.toml so the host's CLI reaches
# every node through its published port, over TLS:
#
#   deploy/up.sh
#   STRATUS_PROFILE=deploy/client-profile.toml ./target/release/stratus cluster status
#
# Build the image first (deploy/build-image.sh). Running it again on a running
# cluster only waits and rewrites the profile. Environment:
#   COMPOSE_PROJECT_NAME     project (default from deploy/.env: stratus)
#   STRATUS_PORT_PREFIX      host ports 127.0.0.1:${prefix}01.. (default 72)
#   STRATUS_DEPLOY_PROFILE   where to write the profile (default deploy/client-profile.toml)
#   STRATUS_DEPLOY_WAIT_SECS how long to wait for health (default 180)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
file="$here/docker-compose.yml"
profile="${STRATUS_DEPLOY_PROFILE:-$here/client-profile.toml}"
wait_secs="${STRATUS_DEPLOY_WAIT_SECS:-180}"
image=stratus-node:dev
node_port=7100

die() { printf 'up: %s\n' "$*" >&2; exit 1; }

# The `docker compose` plugin if present, else the standalone docker-compose.
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  die "neither \`docker compose\` nor docker-compose is installed"
fi
compose+=(--file "$file")

docker info >/dev/null 2>&1 \
  || die "cannot reach the Docker engine (\`docker info\` failed): start dockerd, or check your access to /var/run/docker.sock"
docker image inspect "$image" >/dev/null 2>&1 \
  || die "image $image not found: build it with deploy/build-image.sh"

# The cluster root key (wraps every tenant's keys): made once, kept beside the
# compose file (git-ignored) and mounted read-only into every node. Losing it makes
# the data in the volumes unreadable; replacing it does too.
root_key="$here/root.key"
if [ ! -s "$root_key" ]; then
  (umask 077 && head -c 32 /dev/urandom > "$root_key.tmp" && mv "$root_key.tmp" "$root_key")
  echo "up: generated the cluster root key $root_key (mode 0600); keep it with the volumes"
fi
chmod 600 "$root_key"

# The bootstrap operator secret: made once, kept beside the compose file
# (git-ignored), mounted read-only into every node (which record only its SHA-256
# at the cluster's first start) and written into the client profile below.
operator_secret="$here/operator.secret"
if [ ! -s "$operator_secret" ]; then
  (umask 077 && printf 'sop1.%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$operator_secret.tmp" \
    && mv "$operator_secret.tmp" "$operator_secret")
  echo "up: generated the operator secret $operator_secret (mode 0600)"
fi
chmod 600 "$operator_secret"

"${compose[@]}" up --detach --remove-orphans

# Every service but the one-shot tls-init is a node.
tls_service=tls-init
mapfile -t services < <("${compose[@]}" config --services | grep -vx "$tls_service")
[ "${#services[@]}" -gt 0 ] || die "no services in $file"

# tls-init made (or found) the CA and node certificates in the `tls` volume; the
# nodes started only after it succeeded. The host's client needs the CA.
tls_id="$("${compose[@]}" ps -a -q "$tls_service")"
[ -n "$tls_id" ] || die "service $tls_service has no container"
tls_exit="$(docker inspect --format '{{.State.ExitCode}} {{.State.Status}}' "$tls_id")"
if [ "$tls_exit" != "0 exited" ]; then
  "${compose[@]}" logs --no-color --tail 20 "$tls_service" >&2 || true
  die "$tls_service did not make the TLS material (exit code and state: $tls_exit)"
fi
ca="${profile%.toml}.ca.pem"
docker cp "$tls_id:/etc/stratus/tls/ca.pem" "$ca.tmp" >/dev/null \
  || die "cannot copy the cluster CA out of $tls_service"
mv "$ca.tmp" "$ca"

# Wait for every container's health check, bounded by wait_secs.
deadline=$((SECONDS + wait_secs))
while :; do
  pending=()
  for s in "${services[@]}"; do
    id="$("${compose[@]}" ps -q "$s")"
    [ -n "$id" ] || die "service $s has no container"
    status="$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")"
    [ "$status" = healthy ] || pending+=("$s:$status")
  done
  [ "${#pending[@]}" -eq 0 ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    for p in "${pending[@]}"; do
      s="${p%%:*}"
      printf '\n--- %s (%s), last log lines:\n' "$s" "${p#*:}" >&2
      "${compose[@]}" logs --no-color --tail 20 "$s" >&2 || true
    done
    die "not healthy within ${wait_secs}s: ${pending[*]}"
  fi
  sleep 1
done
echo "up: all ${#services[@]} nodes healthy after ${SECONDS}s"

# The profile: nodes advertise nodeN:7100 (their compose service name), which
# only resolves inside the compose networks; the address map sends the host's
# connections to the published ports instead.
endpoints=()
map=()
for s in "${services[@]}"; do
  published="$("${compose[@]}" port "$s" "$node_port")"
  [ -n "$published" ] || die "service $s publishes no port for $node_port"
  endpoints+=("\"$s:$node_port\"")
  map+=("\"$s:$node_port\" = \"$published\"")
done
tmp="$profile.tmp"
(umask 077 && : >"$tmp")
{
  echo "# Written by deploy/up.sh for the compose cluster; rewritten on every run."
  echo "# Use: STRATUS_PROFILE=$profile stratus cluster status"
  printf 'endpoints = [%s]\n' "$(IFS=,; echo "${endpoints[*]}" | sed 's/,/, /g')"
  echo "# The operator secret: keep this file private."
  printf 'token = "%s"\n' "$(tr -d ' \n' <"$operator_secret")"
  echo "# The cluster's CA (made at the first start in the tls volume): nodes' TLS"
  echo "# certificates must chain to it."
  printf 'ca_file = "%s"\n' "$ca"
  echo
  echo "# Advertised node address -> address this host dials."
  echo "[address_map]"
  printf '%s\n' "${map[@]}"
} >"$tmp"
mv "$tmp" "$profile"
echo "up: client profile written to $profile"
echo "up: export STRATUS_PROFILE=$profile"

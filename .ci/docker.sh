#!/usr/bin/env bash
# Builds the service's container image from the repository's Dockerfile with a real dockerd, and runs
# it against a throwaway PostgreSQL: migrate, serve, Docker's HEALTHCHECK, a url created through the
# API, its redirect, a clean stop. docs/container.md explains each step.
#
# No image registry is reachable here, so the two base images the Dockerfile takes as build
# arguments are made locally with mmdebstrap (Debian bookworm from the Debian archive) and cached:
#   - in the dockerd data root below (kept between runs, with the build cache), and
#   - as `docker save` tarballs under ${XDG_CACHE_HOME:-$HOME/.cache}/gitrev-ci/base-images/,
#     loaded when the data root is gone.
# Their tags carry a hash of their recipe (and of the Rust toolchain), so a change remakes them.
#
# Idempotent: installs what is missing (docker.io, mmdebstrap, PostgreSQL, curl), starts its own
# dockerd on its own socket unless that one already runs (and stops it at the end if it started it).
# Needs root. Fails on any step, printing the log that tells why.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'docker.sh: %s\n' "$*"; }
die() {
  printf 'docker.sh: FAILED: %s\n' "$*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root (dockerd, mmdebstrap and the throwaway cluster need it)"

state=/var/lib/gitrev-ci            # dockerd data root: images and the build cache outlast a run
run_dir=/run/gitrev-ci              # this dockerd's socket, pid file and exec root
cache=${XDG_CACHE_HOME:-$HOME/.cache}/gitrev-ci/base-images
suite=bookworm                      # the Dockerfile's default images are bookworm too
image=gitrev:ci
export DOCKER_HOST=unix://$run_dir/docker.sock
export DOCKER_BUILDKIT=1
# Debian's client, the same version as its daemon: it builds with the daemon's BuildKit directly,
# where a newer client elsewhere on PATH would want the buildx plugin, which Debian 12 lacks.
docker=/usr/bin/docker

start=$SECONDS
phase_start=$SECONDS
# The timings below depend on what else runs on the machine: say how busy it is.
say "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
phase() {
  say "$1 done in $((SECONDS - phase_start)) s"
  phase_start=$SECONDS
}

mkdir -p "$run_dir" "$state" "$cache"
# One run at a time on a machine: they share the daemon and its caches.
exec 9>"$run_dir/lock"
flock -w 1800 9 || die "another .ci/docker.sh held $run_dir/lock for 30 minutes"

work=$(mktemp -d /tmp/gitrev-docker-XXXXXX)
chmod 755 "$work"
dockerd_pid=
container=
pg_data=
pg_ctl=

cleanup() {
  local status=$?
  set +e
  if [ -n "$container" ]; then
    if [ "$status" -ne 0 ]; then
      echo "---- container log (last 40 lines) ----"
      $docker logs --tail 40 "$container" 2>&1
    fi
    $docker rm -f "$container" >/dev/null 2>&1
  fi
  if [ -n "$pg_ctl" ]; then
    runuser -u postgres -- "$pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1
  fi
  if [ -n "$dockerd_pid" ]; then
    # Dangling images (earlier builds of $image) go; the build cache is capped, not emptied.
    $docker image prune -f >/dev/null 2>&1
    $docker builder prune -f --keep-storage 8gb >/dev/null 2>&1
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$dockerd_pid" 2>/dev/null; then
      echo "docker.sh: dockerd did not stop within 30 s; killing it" >&2
      kill -KILL "$dockerd_pid" 2>/dev/null
    fi
  fi
  rm -rf "$work"
  if [ "$status" -eq 0 ]; then
    say "all checks passed in $((SECONDS - start)) s"
  else
    echo "docker.sh: FAILED (exit $status) after $((SECONDS - start)) s" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. Tools -------------------------------------------------------------------------------------
missing=()
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v curl >/dev/null 2>&1 || missing+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
  apt_get update -qq
  apt_get install -y -qq "${missing[@]}" > "$work/apt.log" 2>&1 ||
    { tail -30 "$work/apt.log"; die "apt-get install ${missing[*]}"; }
fi
command -v rustc >/dev/null 2>&1 || die "rustc not on PATH: the builder base image copies the host's toolchain"
phase "tools"

# ---- 2. dockerd -----------------------------------------------------------------------------------
if $docker info >/dev/null 2>&1; then
  say "using the dockerd already on $DOCKER_HOST"
else
  say "starting dockerd on $DOCKER_HOST (data root $state/docker)"
  # No bridge and no iptables rules: containers and builds use the host's network, and this daemon
  # cannot clash with another dockerd on the machine.
  dockerd --host "$DOCKER_HOST" \
    --data-root "$state/docker" \
    --exec-root "$run_dir/exec" \
    --pidfile "$run_dir/docker.pid" \
    --bridge none --iptables=false --ip-masq=false \
    > "$run_dir/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 300); do
    $docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || { tail -30 "$run_dir/dockerd.log"; dockerd_pid=; die "dockerd exited"; }
    sleep 0.2
  done
  $docker info >/dev/null 2>&1 || { tail -30 "$run_dir/dockerd.log"; die "dockerd did not answer within 60 s"; }
fi
say "$($docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}')"
phase "dockerd"

# ---- 3. Base images -------------------------------------------------------------------------------
# The Debian archive this machine's apt uses (a local mirror is honoured); none found: mmdebstrap's
# default. bookworm, its updates and its security fixes.
main_uri=$( { awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources
              awk '$1 == "deb" { print $2 }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list
            } 2>/dev/null | grep -v -- '-security' | head -1 || true)
security_uri=$( { awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources
                  awk '$1 == "deb" { print $2 }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list
                } 2>/dev/null | grep -- '-security' | head -1 || true)
mirrors=()
if [ -n "$main_uri" ]; then
  mirrors+=("deb $main_uri $suite main" "deb $main_uri $suite-updates main")
  [ -z "$security_uri" ] || mirrors+=("deb $security_uri $suite-security main")
fi

# Common to both: the Essential set only (no apt), without documentation.
# shellcheck disable=SC2016 # "$1" is the hook's argument: the root directory being made
mmdebstrap_common=(
  --variant=essential
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log'
)

# Runtime base: the stand-in for gcr.io/distroless/cc-debian12:nonroot (glibc, libgcc, CA
# certificates, user nonroot = 65532), with the Essential set's shell and coreutils besides.
make_runtime() { # OUT.tar
  # shellcheck disable=SC2016 # "$1" is the hook's argument: the root directory being made
  mmdebstrap "${mmdebstrap_common[@]}" --include=ca-certificates \
    --customize-hook='echo "nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin" >> "$1/etc/passwd"
                      echo "nonroot:x:65532:" >> "$1/etc/group"
                      echo "nonroot:!:19000::::::" >> "$1/etc/shadow"
                      install -d -o 65532 -g 65532 -m 0700 "$1/home/nonroot"' \
    "$suite" "$1" "${mirrors[@]}"
}
runtime_changes=(--change 'USER 65532:65532' --change 'WORKDIR /home/nonroot')

# Builder base: the stand-in for rust:<version>-bookworm. rustup cannot download a toolchain here
# (only the package registries are reachable) and bookworm's rustc (1.63) is too old for
# Cargo.lock, so it takes the host's rustup toolchain (cargo, rustc, the standard library; not the
# documentation), with gcc and libc headers for linking and the cc crate (mimalloc). It also takes
# the host's CA bundle, so cargo inside the build trusts what cargo on the host trusts.
sysroot=$(rustc --print sysroot)
rust_version=$(rustc --version | awk '{ print $2 }')
make_builder() { # OUT.tar
  local hook
  # shellcheck disable=SC2016 # "$1" is the hook's argument: the root directory being made
  hook=$(printf 'set -e; mkdir -p "$1/usr/local/rust/bin" "$1/usr/local/cargo/bin"
                 cp -a %q/bin/cargo %q/bin/rustc %q/bin/rustdoc "$1/usr/local/rust/bin/"
                 cp -a %q/lib "$1/usr/local/rust/"
                 cp %q "$1/etc/ssl/certs/ca-certificates.crt"' \
    "$sysroot" "$sysroot" "$sysroot" "$sysroot" /etc/ssl/certs/ca-certificates.crt)
  mmdebstrap "${mmdebstrap_common[@]}" --include=ca-certificates,gcc,libc6-dev,pkg-config \
    --customize-hook="$hook" "$suite" "$1" "${mirrors[@]}"
}
builder_changes=(
  --change 'ENV CARGO_HOME=/usr/local/cargo'
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'WORKDIR /'
)

key() { sha256sum | cut -c1-12; }
runtime_key=$( { declare -f make_runtime; printf '%s\n' "${mmdebstrap_common[@]}" "${runtime_changes[@]}" "${mirrors[@]}"; } | key)
builder_key=$( { declare -f make_builder; printf '%s\n' "${mmdebstrap_common[@]}" "${builder_changes[@]}" "${mirrors[@]}"
                 rustc -vV; sha256sum /etc/ssl/certs/ca-certificates.crt; } | key)
runtime_tag=gitrev-ci/runtime:$suite-$runtime_key
builder_tag=gitrev-ci/rust:$rust_version-$suite-$builder_key

# Present in the daemon, else loaded from the tarball cache, else made (in the background, both at
# once: most of the time goes to unpacking packages). make_image TAG MAKE-FUNCTION CHANGES-ARRAY-NAME
make_image() {
  local tag=$1 make=$2 changes="$3[@]" name=${1//[\/:]/_}
  TMPDIR=$tmpfs_dir "$make" "$work/$name.rootfs.tar" > "$work/$name.log" 2>&1
  $docker import "${!changes}" "$work/$name.rootfs.tar" "$tag" >> "$work/$name.log" 2>&1
  rm -f "$work/$name.rootfs.tar"
  # The tarball cache keeps the newest of each kind (gitrev-ci/runtime, gitrev-ci/rust).
  local kind=${tag%%:*}
  rm -f "$cache/${kind//\//_}"_*.tar
  $docker save -o "$cache/$name.tar.part" "$tag" >> "$work/$name.log" 2>&1
  mv "$cache/$name.tar.part" "$cache/$name.tar"
}
# mmdebstrap unpacks into a temporary directory: on tmpfs that is twice as fast as on disk.
tmpfs_dir=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && tmpfs_dir=/dev/shm
pids=()
names=()
for spec in "$runtime_tag make_runtime runtime_changes" "$builder_tag make_builder builder_changes"; do
  read -r tag make changes <<< "$spec"
  name=${tag//[\/:]/_}
  if $docker image inspect "$tag" >/dev/null 2>&1; then
    say "base image $tag: present"
  elif [ -s "$cache/$name.tar" ]; then
    say "base image $tag: loading $cache/$name.tar"
    $docker load -q -i "$cache/$name.tar" >/dev/null
    $docker image inspect "$tag" >/dev/null 2>&1 || die "$cache/$name.tar did not hold $tag"
  else
    say "base image $tag: making it (mmdebstrap $suite + docker import)"
    make_image "$tag" "$make" "$changes" &
    pids+=($!)
    names+=("$name")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { tail -40 "$work/${names[$i]}.log"; die "making the base image ${names[$i]}"; }
done
$docker run --rm --network none "$builder_tag" sh -c 'cargo --version && rustc --version && cc --version | head -1' |
  sed 's/^/docker.sh: builder: /'
# shellcheck disable=SC2016 # expanded by the container's shell
$docker run --rm --network none "$runtime_tag" sh -c 'echo "runs as $(id)"' | sed 's/^/docker.sh: runtime: /'
phase "base images"

# ---- 4. The image ---------------------------------------------------------------------------------
# The build uses the host's network (this daemon has no bridge) to fetch crates from crates.io.
# CI checks that the image builds and works, not how fast its binary is: the `ci-image` profile
# (no LTO, parallel codegen) builds in about half the time of `release` (measured cold, 2 cores:
# 94 s against 183 s). The image users build keeps the Dockerfile's default, `release`.
profile=${GITREV_IMAGE_PROFILE:-ci-image}
say "docker build (profile $profile; log in $work/build.log while it runs)"
if ! $docker build --network host --progress plain \
  --build-arg BUILDER_IMAGE="$builder_tag" --build-arg RUNTIME_IMAGE="$runtime_tag" \
  --build-arg PROFILE="$profile" \
  -t "$image" . > "$work/build.log" 2>&1; then
  tail -60 "$work/build.log"
  die "docker build"
fi
grep -o 'transferring context: .*' "$work/build.log" | tail -1 | sed 's/^/docker.sh: build context: /' || true
if grep -q "Finished .$profile" "$work/build.log"; then
  grep -o "Finished .$profile.*" "$work/build.log" | sed 's/^/docker.sh: cargo: /'
else
  say "cargo: the build stage was cached (same sources, same base image)"
fi
[ "$($docker inspect --format '{{.Config.User}}' "$image")" = "65532:65532" ] || die "the image does not run as 65532"
$docker inspect --format '{{json .Config.Healthcheck.Test}}' "$image" | grep -q healthcheck ||
  die "the image has no HEALTHCHECK running gitrev healthcheck"
say "image $image: $($docker image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
phase "image build"

# ---- 5. A throwaway PostgreSQL on the host ----------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
pg_port=$(free_port)
pg_dir=$work/pg # the postgres user's: the cluster, its log, its socket
pg_data=$pg_dir/data
password=gitrev-ci-$RANDOM$RANDOM
install -d -o postgres -g postgres -m 0700 "$pg_dir"
printf '%s\n' "$password" > "$pg_dir/pw"
chown postgres "$pg_dir/pw"
runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -U postgres --auth-local=trust \
  --auth-host=scram-sha-256 --pwfile="$pg_dir/pw" > "$work/initdb.log" 2>&1 ||
  { tail -20 "$work/initdb.log"; die "initdb"; }
pg_ctl=$pg_bin/pg_ctl
runuser -u postgres -- "$pg_ctl" -D "$pg_data" -l "$pg_dir/log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir" start > /dev/null ||
  { tail -20 "$pg_dir/log"; die "pg_ctl start"; }
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_port" -d postgres \
  -c "CREATE ROLE gitrev LOGIN PASSWORD '$password'" -c "CREATE DATABASE gitrev OWNER gitrev"
database_url=postgres://gitrev:$password@127.0.0.1:$pg_port/gitrev
say "PostgreSQL $("$pg_bin/postgres" --version | awk '{ print $3 }') on 127.0.0.1:$pg_port"
phase "PostgreSQL"

# ---- 6. Run it ------------------------------------------------------------------------------------
# `migrate` first, as compose.yaml does (serve would migrate too): the entrypoint and a subcommand.
migrate_out=$($docker run --rm --network host -e DATABASE_URL="$database_url" "$image" migrate 2>&1) ||
  { echo "$migrate_out"; die "gitrev migrate"; }
echo "$migrate_out" | grep -Eq '^schema at migration [0-9]+ \([1-9][0-9]* applied now\)' ||
  { echo "$migrate_out"; die "gitrev migrate applied nothing to an empty database"; }
say "migrate: $(echo "$migrate_out" | tail -1)"

app_port=$(free_port)
token=ci-token-$RANDOM$RANDOM
container=gitrev-ci-$$
# As compose.yaml and the Helm chart run it: read-only root file system, /tmp writable.
$docker run -d --name "$container" --network host --read-only --tmpfs /tmp \
  -e DATABASE_URL="$database_url" -e GITREV_ENV=production -e GITREV_LISTEN="127.0.0.1:$app_port" \
  -e GITREV_API_TOKEN="$token" "$image" > /dev/null
for _ in $(seq 1 90); do
  health=$($docker inspect --format '{{.State.Status}} {{.State.Health.Status}}' "$container")
  case $health in
    "running healthy") break ;;
    "running starting") sleep 1 ;;
    *) die "container is '$health'" ;;
  esac
done
[ "$health" = "running healthy" ] || die "HEALTHCHECK did not report healthy within 90 s ($health)"
say "HEALTHCHECK: healthy after $((SECONDS - phase_start)) s"
$docker exec "$container" /usr/local/bin/gitrev healthcheck --ready | sed 's/^/docker.sh: /'

base=http://127.0.0.1:$app_port
body='{"original_url":"https://example.com/x"}'
status=$(curl -sS -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d "$body" "$base/urls")
[ "$status" = 401 ] || die "POST /urls without the API token answered $status, not 401"
curl -sS -o "$work/created.json" -w '%{http_code}' -H 'content-type: application/json' \
  -H "authorization: Bearer $token" -d "$body" "$base/urls" > "$work/created.status"
[ "$(cat "$work/created.status")" = 201 ] ||
  { cat "$work/created.json"; die "POST /urls answered $(cat "$work/created.status"), not 201"; }
code=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["short_code"])' "$work/created.json")
curl -sS -o /dev/null -D "$work/redirect.head" "$base/$code"
status=$(awk 'NR == 1 { print $2 }' "$work/redirect.head")
location=$(awk 'tolower($1) == "location:" { sub(/\r$/, "", $2); print $2 }' "$work/redirect.head")
[ "$status" = 302 ] || { cat "$work/redirect.head"; die "GET /$code answered $status, not 302"; }
[ "$location" = https://example.com/x ] || die "GET /$code sent location '$location', not https://example.com/x"
say "POST /urls -> $code; GET /$code -> $status, location $location"

# A clean stop: SIGTERM, and exit status 0 within the image's shutdown bounds.
$docker stop -t 30 "$container" > /dev/null
exit_code=$($docker inspect --format '{{.State.ExitCode}}' "$container")
[ "$exit_code" = 0 ] || die "the container exited $exit_code on docker stop"
say "docker stop: exit 0"
phase "run checks"

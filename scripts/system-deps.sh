#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests run for real, if any is missing.
# Usage: scripts/system-deps.sh [demo|test]
set -euo pipefail
profile=${1:-test}
packages=(prometheus prometheus-alertmanager prometheus-node-exporter)
if [ "$profile" = test ]; then
  # The comparison report is opened in a real headless browser by the tests.
  packages+=(chromium)
  # Container images without a Docker daemon (tests/images, `triptyque image build`):
  # buildah builds, skopeo copies, podman runs, docker-registry is the local registry,
  # debootstrap makes the base. runc, not crun: crun refuses hybrid cgroups
  # (images/containers.conf selects it, the machine's own config is left alone).
  packages+=(runc podman buildah skopeo docker-registry catatonit debootstrap)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "error: missing Debian packages ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "installing Debian packages: ${missing[*]}"
${SUDO:-} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

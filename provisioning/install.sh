#!/usr/bin/env bash
# Install the sentry on a Raspberry Pi OS (bookworm) device as a systemd service.
# Run as root from a checkout: provisioning/install.sh [CONFIG.toml]
# Idempotent: re-running upgrades the code and keeps /etc/edge-sentry/sentry.toml.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
config="${1:-}"
prefix=/opt/edge-sentry

[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 2; }

apt-get update -qq
# espeak-ng renders the spoken prompts, aplay (alsa-utils) plays them.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-picamera2 python3-lgpio \
  espeak-ng alsa-utils

# The unit's SupplementaryGroups=: Raspberry Pi OS's udev rules give gpio the gpiochips, video the
# camera nodes, /dev/dma_heap and /dev/vcio, and audio the sound nodes /dev/snd/*. Without any of
# them systemd would refuse to start it.
for group in gpio video audio; do
  getent group "$group" >/dev/null || { echo "install.sh: no group $group: not Raspberry Pi OS?" >&2; exit 2; }
done
id edge-sentry >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edge-sentry --shell /usr/sbin/nologin edge-sentry
usermod -a -G gpio,video,audio edge-sentry

mkdir -p "$prefix" /etc/edge-sentry
cp -r "$src/edge_sentry" "$src/hw_tests" "$src/setup.cfg" "$src/pyproject.toml" "$src/README.md" "$prefix/"
# picamera2 and lgpio come from apt: the venv must see the system's site packages.
[ -x "$prefix/.venv/bin/python" ] || python3 -m venv --system-site-packages "$prefix/.venv"
"$prefix/.venv/bin/pip" install --quiet --disable-pip-version-check "$prefix"

if [ -n "$config" ]; then
  install -m 0640 -g edge-sentry "$config" /etc/edge-sentry/sentry.toml
elif [ ! -f /etc/edge-sentry/sentry.toml ]; then
  install -m 0640 -g edge-sentry "$src/provisioning/sentry.example.toml" /etc/edge-sentry/sentry.toml
  echo "install.sh: edit /etc/edge-sentry/sentry.toml (device id, site, trust file), then restart the service"
fi

# The spoken prompts, rendered now as the service's user into its state folder, so the first visitor
# does not wait for the first start to render them (it would, in the background, if this failed).
install -d -m 0700 -o edge-sentry -g edge-sentry /var/lib/edge-sentry
runuser -u edge-sentry -- env XDG_STATE_HOME=/var/lib \
  "$prefix/.venv/bin/edge-sentry" voice render --config /etc/edge-sentry/sentry.toml \
  || echo "install.sh: the voice prompts were not rendered (see above); the sentry will try at its start" >&2

install -m 0644 "$src/systemd/edge-sentry.service" /etc/systemd/system/edge-sentry.service
systemd-analyze verify /etc/systemd/system/edge-sentry.service
systemctl daemon-reload
systemctl enable --now edge-sentry.service
systemd-analyze security edge-sentry.service | tail -n 1
systemctl --no-pager status edge-sentry.service | head -n 5

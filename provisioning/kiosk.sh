#!/usr/bin/env bash
# Set up the visitor display on the sentry's own screen (Raspberry Pi OS bookworm with its desktop):
# a `kiosk` user logged in automatically, whose labwc (or wayfire) session runs Chromium in kiosk
# mode on the sentry's local page, with screen blanking off. Run as root, after install.sh:
#   provisioning/kiosk.sh [CONFIG.toml]      (default: /etc/edge-sentry/sentry.toml)
# Idempotent: re-running rewrites the kiosk user's session files (the page address from the config).
set -euo pipefail
config="${1:-/etc/edge-sentry/sentry.toml}"
prefix=/opt/edge-sentry
user=kiosk

[ "$(id -u)" -eq 0 ] || { echo "kiosk.sh: run as root" >&2; exit 2; }
[ -x "$prefix/.venv/bin/python" ] || { echo "kiosk.sh: run provisioning/install.sh first" >&2; exit 2; }

# Raspberry Pi OS names its package chromium-browser (newer images: chromium); Debian's is chromium.
if ! command -v chromium-browser >/dev/null && ! command -v chromium >/dev/null; then
  apt-get update -qq
  if apt-cache show chromium-browser >/dev/null 2>&1; then pkg=chromium-browser; else pkg=chromium; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg"
fi
browser="$(command -v chromium-browser || command -v chromium)"

id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --comment "Edge Sentry display" "$user"
home="$(getent passwd "$user" | cut -d: -f6)"

# The session files: the user unit running Chromium, labwc's autostart, wayfire.ini.
"$prefix/.venv/bin/python" -m edge_sentry.kiosk --config "$config" --home "$home" --browser "$browser"
chown -R "$user:$user" "$home/.config"

# Log the kiosk user in at boot into the desktop (LightDM, as raspi-config's "desktop autologin"
# does it, but for this user), and keep its user manager running.
if [ -f /etc/lightdm/lightdm.conf ]; then
  sed -i -e "s/^\(#\|\)autologin-user=.*/autologin-user=$user/" /etc/lightdm/lightdm.conf
  grep -q "^autologin-user=$user" /etc/lightdm/lightdm.conf \
    || sed -i -e "/^\[Seat:\*\]/a autologin-user=$user" /etc/lightdm/lightdm.conf
else
  echo "kiosk.sh: no /etc/lightdm/lightdm.conf: log $user in to the desktop by other means" >&2
fi
systemctl set-default graphical.target
loginctl enable-linger "$user"

# Screen blanking off for the whole machine where raspi-config can say so (1 = off); the kiosk's
# own session starts no idle daemon either way (edge_sentry/kiosk.py).
if command -v raspi-config >/dev/null; then
  raspi-config nonint do_blanking 1 || echo "kiosk.sh: raspi-config could not turn blanking off" >&2
fi

echo "kiosk.sh: reboot to start the display (user $user, $browser)"

#!/bin/sh
# privy's node installer: the DaemonSet's init container runs it (in the
# image deploy/kubernetes/build-image makes) with the node's directories
# mounted through hostPath. It installs, on the node:
#   /usr/local/bin/privy and the link privy-shim   (the binary, the shim)
#   /etc/privy/privy.toml                          (from the ConfigMap)
#   /etc/privy/vault/{token,secret-id,ca.pem}      (from the optional Secret)
#   containerd 1.6/1.7: the runtime handler, appended to /etc/containerd/config.toml
#   containerd 2.x: /etc/containerd/conf.d/privy.toml
#   CRI-O: /etc/containers/oci/hooks.d/privy-*.json and
#          /etc/crio/crio.conf.d/10-privy.conf
# and warms privy's plugin cache (/var/cache/privy), so the first pod does
# not pay for compiling a plugin.
#
# Environment:
#   PRIVY_RUNTIME=containerd|cri-o      which runtime the node runs (default containerd)
#   PRIVY_RESTART_RUNTIME=1             restart the runtime through the host's systemd (needs hostPID, privileged)
set -eu

host=${PRIVY_HOST_ROOT:-/host}
runtime=${PRIVY_RUNTIME:-containerd}
share=/usr/share/privy
say() { echo "privy-install: $*"; }
die() { echo "privy-install: $*" >&2; exit 1; }

# Write a file atomically (a hook running now keeps the old inode).
put() { # SRC DEST MODE
  tmp="$2.privy-new.$$"
  cp "$1" "$tmp" && chmod "$3" "$tmp" && mv -f "$tmp" "$2"
}

mkdir -p "$host/usr/local/bin" /etc/privy /var/cache/privy
put /usr/local/bin/privy "$host/usr/local/bin/privy" 0755
ln -sfn privy "$host/usr/local/bin/privy-shim"
say "installed /usr/local/bin/privy and privy-shim"
if [ -x /usr/local/bin/privy-hook ]; then
  # The thin hook: the shim and the hooks.d entries run it on every start;
  # it asks the node agent (privy daemon, below) and falls back to privy.
  put /usr/local/bin/privy-hook "$host/usr/local/bin/privy-hook" 0755
  say "installed /usr/local/bin/privy-hook"
fi

[ -f /config/privy.toml ] || die "no /config/privy.toml: mount the privy-config ConfigMap there"
put /config/privy.toml /etc/privy/privy.toml 0644
# The node's credentials for OpenBao/Vault, when the Secret is mounted: a
# node credential like the kubelet's, readable by root only; never a
# container's file.
if [ -d /vault ]; then
  mkdir -p /etc/privy/vault && chmod 0700 /etc/privy/vault
  for f in token secret-id ca.pem; do
    if [ -f "/vault/$f" ]; then put "/vault/$f" "/etc/privy/vault/$f" 0600; say "installed /etc/privy/vault/$f"; fi
  done
fi
# Validate the config and compile every plugin into the node's cache; a
# bad config stops here, before any runtime points at it.
/usr/local/bin/privy --config /etc/privy/privy.toml config check >/dev/null
say "config valid, plugins compiled into /var/cache/privy"

restart() {
  if [ "${PRIVY_RESTART_RUNTIME:-0}" = 1 ]; then
    nsenter -t 1 -m -u -i -n -p -- systemctl restart "$1" && say "restarted $1"
  else
    say "restart $1 on this node to load the change (or set PRIVY_RESTART_RUNTIME=1)"
  fi
}

case "$runtime" in
containerd)
  cfg="$host/etc/containerd/config.toml"
  [ -f "$cfg" ] || die "no /etc/containerd/config.toml: write containerd's defaults first (containerd config default > /etc/containerd/config.toml)"
  if grep -Eq '^[[:space:]]*version[[:space:]]*=[[:space:]]*3' "$cfg"; then
    # containerd 2.x merges imported files key by key: a drop-in.
    mkdir -p "$host/etc/containerd/conf.d"
    put "$share/containerd/privy-v3.toml" "$host/etc/containerd/conf.d/privy.toml" 0644
    say "installed /etc/containerd/conf.d/privy.toml"
    if ! grep -q 'conf\.d' "$cfg"; then
      die "/etc/containerd/config.toml does not import /etc/containerd/conf.d/*.toml: add imports = [\"/etc/containerd/conf.d/*.toml\"] at its top"
    fi
  else
    # containerd 1.6 and 1.7 replace a plugin's whole section with an
    # imported file's: the handler goes into config.toml itself, between
    # markers, so installing again replaces it.
    grep -q 'containerd.runtimes.runc\]' "$cfg" ||
      die "/etc/containerd/config.toml defines no runtimes.runc table; naming the privy runtime would replace containerd's built-in list (start from containerd config default)"
    if grep -q 'runtimes.privy\]' "$cfg" && ! grep -q '^# BEGIN privy' "$cfg"; then
      die "/etc/containerd/config.toml already defines a privy runtime outside privy's markers; remove it first"
    fi
    new="$cfg.privy-new.$$"
    sed '/^# BEGIN privy/,/^# END privy/d' "$cfg" > "$new"
    { echo "# BEGIN privy (written by privy's node installer; replaced when it runs again)"
      cat "$share/containerd/privy-v2.toml"
      echo "# END privy"; } >> "$new"
    mv -f "$new" "$cfg"
    say "added the privy runtime handler to /etc/containerd/config.toml"
  fi
  restart containerd
  ;;
cri-o)
  mkdir -p "$host/etc/containers/oci/hooks.d" "$host/etc/crio/crio.conf.d"
  # The entries name /usr/local/bin/privy-hook (or privy, in an image built
  # without it), the host's copies installed above (the same files as this
  # image's).
  /usr/local/bin/privy --config /etc/privy/privy.toml install \
    --hooks-dir "$host/etc/containers/oci/hooks.d" --binary /usr/local/bin/privy >/dev/null
  put "$share/crio/10-privy.conf" "$host/etc/crio/crio.conf.d/10-privy.conf" 0644
  say "installed hooks.d entries and /etc/crio/crio.conf.d/10-privy.conf"
  restart crio
  ;;
*)
  die "PRIVY_RUNTIME=$runtime: use containerd or cri-o"
  ;;
esac
say "done"

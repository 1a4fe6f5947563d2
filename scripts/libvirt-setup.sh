# Sourced by setup.sh: start virtlogd and libvirtd when they are not running (there is no systemd
# here) and wait until qemu:///system answers.
start_daemon() {
  local name=$1
  if pgrep -x "$name" >/dev/null; then
    return
  fi
  say "starting $name"
  "$name" -d
}
# Debian's libvirt without dnsmasq-base cannot start an isolated network unless this dir exists.
mkdir -p /var/lib/libvirt/dnsmasq
start_daemon virtlogd
start_daemon libvirtd
for _ in $(seq 1 50); do
  virsh -c qemu:///system version >/dev/null 2>&1 && break
  sleep 0.2
done
virsh -c qemu:///system version >/dev/null 2>&1 || die "libvirtd did not come up; see /var/log/libvirt/libvirtd.log"

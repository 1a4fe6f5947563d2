#!/bin/busybox sh
# isobench initramfs /init: load the virtio modules, mount the root disk, hand over to the agent.
# Kept to the minimum a guest needs so boot time measures the hypervisor, not an init system.
/bin/busybox mount -t proc proc /proc
read -r up0 _ < /proc/uptime
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev

fail() {
    echo "isobench-init: $*" > /dev/console
    /bin/busybox sync
    /bin/busybox poweroff -f
}

while read -r mod; do
    /bin/busybox insmod "/lib/modules/$mod" || fail "insmod $mod failed"
done < /modules.order

# wait_disk DEV WHAT: the virtio disk DEV must appear within 10 s.
wait_disk() {
    i=0
    while [ ! -b "$1" ]; do
        i=$((i + 1))
        [ "$i" -gt 2000 ] && fail "$2 $1 did not appear"
        /bin/busybox usleep 5000
    done
}

wait_disk /dev/vda "root disk"
/bin/busybox mount -t ext4 -o rw,noatime /dev/vda /newroot || fail "cannot mount /dev/vda"
# A volume (isobench.data=vdb on the command line): the second virtio disk, mounted at /data.
read -r cmdline < /proc/cmdline
case " $cmdline " in
*" isobench.data=vdb "*)
    wait_disk /dev/vdb "data disk"
    /bin/busybox mkdir -p /newroot/data
    /bin/busybox mount -t ext4 -o rw,noatime /dev/vdb /newroot/data || fail "cannot mount /dev/vdb at /data"
    ;;
esac
read -r up1 _ < /proc/uptime
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /usr/local/sbin/isobench-agent init_uptime="$up0" switch_uptime="$up1"

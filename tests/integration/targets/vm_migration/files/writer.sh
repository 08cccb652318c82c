# Runs inside the test guest: writes a checksummed sequence to /dev/$1, one 512-byte block per write,
# each written with fsync: "kvmf <i> <guest uptime in cs> <sha256 of 'i cs', 16 hex>". /tmp/kvmf-seq holds
# the last block written; touching /tmp/kvmf-stop ends it (then /tmp/kvmf-stopped appears).
dev=$1
i=0
rm -f /tmp/kvmf-stop /tmp/kvmf-stopped /tmp/kvmf-error
while [ ! -e /tmp/kvmf-stop ]; do
  read -r up _ < /proc/uptime
  cs=${up%.*}${up#*.}
  h=$(echo "$i $cs" | sha256sum | cut -c1-16)
  if ! printf 'kvmf %d %s %s\n' "$i" "$cs" "$h" | dd of="/dev/$dev" bs=512 seek="$i" count=1 conv=sync,notrunc,fsync 2>/dev/null; then
    echo "write $i failed" > /tmp/kvmf-error
    break
  fi
  echo "$i" > /tmp/kvmf-seq
  i=$((i + 1))
  usleep 100000
done
touch /tmp/kvmf-stopped
